"""`python -m memgate_testing.fake_provider`: serve the fake provider in the foreground."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from memgate_testing.fake_provider._app import FakeProviderApp
from memgate_testing.fake_provider._server import bind_socket, make_server, url_host
from memgate_testing.fake_provider._state import Behavior, FakeState


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m memgate_testing.fake_provider", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    parser.add_argument("--port-file", help="write the bound port here once listening")
    parser.add_argument("--api-key", help="accept only this bearer key (default: any non-empty key)")
    parser.add_argument("--fast", action="store_true", help="benchmark mode: no recording, fixed tiny reply")
    parser.add_argument("--delay-ms", type=int, default=0, help="starting behaviour: delay before answering")
    parser.add_argument("--chunk-delay-ms", type=int, default=0, help="starting behaviour: delay between chunks")
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    behavior = Behavior(delay_ms=args.delay_ms, chunk_delay_ms=args.chunk_delay_ms)
    state = FakeState(record=not args.fast, behavior=behavior)
    app = FakeProviderApp(state, fast=args.fast, expected_key=args.api_key)
    sock = bind_socket(args.host, args.port)
    port = sock.getsockname()[1]
    server = make_server(app)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not task.done():
        await asyncio.sleep(0.002)
    if server.started:
        _announce(args, port)
    await task


def _announce(args: argparse.Namespace, port: int) -> None:
    if args.port_file:  # write-then-rename so a reader never sees a partial file
        target = Path(args.port_file)
        partial = target.with_name(target.name + f".{os.getpid()}.tmp")
        partial.write_text(f"{port}\n")
        partial.replace(target)
    mode = " (fast)" if args.fast else ""
    print(f"fake provider listening on http://{url_host(args.host)}:{port}/v1{mode}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(args))
    else:
        uvloop.run(serve(args))
