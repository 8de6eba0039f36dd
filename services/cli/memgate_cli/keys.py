"""`memgate keys create | list | revoke` and `memgate usage`: operator commands on the database."""

from __future__ import annotations

import argparse
from collections.abc import Callable

import msgspec

from memgate_core.ids import CLIENT_ID_PATTERN
from memgate_store import Stores, UsageReport, migrate
from memgate_store.keys import ApiKey, limits_error, name_error
from memgate_store.usage import UsageRow, parse_since


def _limits(key: ApiKey) -> str:
    def one(rpm: int | None, burst: int | None = None) -> str:
        if rpm is None:
            return "default"
        return "unlimited" if rpm == 0 else f"{rpm}/min" + (f" burst {burst}" if burst else "")
    return (f"chat {one(key.rpm_limit, key.burst)}, memory reads {one(key.memory_read_rpm)}, "
            f"memory writes {one(key.memory_write_rpm)}")


async def run_keys(database_url: str, args: argparse.Namespace) -> int:
    await migrate(database_url)
    stores = await Stores.connect(database_url, max_size=2)
    try:
        if args.keys_command == "create":
            if not CLIENT_ID_PATTERN.fullmatch(args.tenant):
                raise SystemExit("memgate: --tenant must be 1-128 characters from A-Z a-z 0-9 . _ : @ -")
            if problem := name_error(args.name):
                raise SystemExit(f"memgate: --name: {problem}")
            problem = limits_error(args.rpm, args.burst, memory_read_rpm=args.memory_read_rpm,
                                   memory_write_rpm=args.memory_write_rpm)
            if problem:
                raise SystemExit(f"memgate: --{problem.replace('_', '-')}")
            key, plaintext = await stores.keys.create(args.tenant, args.name, is_admin=args.admin,
                                                      rpm_limit=args.rpm, burst=args.burst,
                                                      memory_read_rpm=args.memory_read_rpm,
                                                      memory_write_rpm=args.memory_write_rpm)
            if args.quiet:
                print(plaintext)
            else:
                scope = "admin key" if key.is_admin else "API key"
                print(f"{scope} for tenant '{key.tenant}' (id {key.id}, limits {_limits(key)}); "
                      f"it is shown only once:\n{plaintext}")
        elif args.keys_command == "list":
            for key in await stores.keys.list(args.tenant):
                state = f"revoked {key.revoked_at:%Y-%m-%d}" if key.revoked_at else "active"
                print("\t".join([key.id, key.tenant, f"{key.prefix}...", key.name or "-",
                                 "admin" if key.is_admin else "-", _limits(key),
                                 f"{key.created_at:%Y-%m-%d %H:%M}", state]))
        elif args.keys_command == "revoke":
            if not await stores.keys.revoke(args.key_id):
                raise SystemExit(f"memgate: no active key with id {args.key_id}")
            print(f"revoked {args.key_id}")
    finally:
        await stores.close()
    return 0


async def run_usage(database_url: str, args: argparse.Namespace) -> int:
    try:
        since = parse_since(args.since)
    except ValueError as exc:
        raise SystemExit(f"memgate: --since: {exc}") from None
    await migrate(database_url)
    stores = await Stores.connect(database_url, max_size=2)
    try:
        report = await stores.usage.report(since, tenant=args.tenant)
    finally:
        await stores.close()
    if args.json:
        print(msgspec.json.format(msgspec.json.encode(report)).decode())
    else:
        print(format_report(report))
    return 0


def format_report(report: UsageReport) -> str:
    who = f"tenant {report.tenant}" if report.tenant else "all tenants"
    lines = [f"usage of {who}, {report.since:%Y-%m-%d %H:%M} to {report.until:%Y-%m-%d %H:%M} UTC"]
    header = (f"  {'':60} {'requests':>9} {'errors':>7} {'tokens in':>10} {'tokens out':>10} {'avg ms':>8} "
              f"{'p95 ms':>8} {'cost USD':>12}")

    def row(label: str, r: UsageRow) -> str:
        return (f"  {label[:60]:60} {r.requests:>9} {r.errors:>7} {r.input_tokens:>10} {r.output_tokens:>10} "
                f"{r.avg_latency_ms:>8.1f} {r.p95_latency_ms:>8.1f} {r.cost_usd:>12.6f}")

    lines += [header, row("total", report.totals)]
    sections: list[tuple[str, list[UsageRow], Callable[[UsageRow], str]]] = [
        ("by model", report.by_model, lambda r: r.model or "-"),
        ("by provider", report.by_provider, lambda r: r.provider or "-"),
        ("by key", report.by_key, lambda r: f"{r.key_id or '-'} ({r.tenant or '-'}, {r.key_name or r.key_prefix or '-'})"),
    ]
    for title, rows, label in sections:
        if rows:
            lines.append(f"{title}:")
            lines += [row(label(r), r) for r in rows]
    return "\n".join(lines)
