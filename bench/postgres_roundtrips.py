"""What one Postgres round trip of a chat request costs, back to back and at a moderate rate.

A chat with memory on makes two round trips to Postgres before its response ends: its thread
view's refresh (`ThreadRepository.changes`) and the durable record of the exchange
(`ThreadRepository.record`, a commit that waits for the WAL flush). Back to back they are
cheap; one request every 10 ms (100 req/s) finds Postgres and this process idle, and each
round trip pays for waking them (and the flush its disk). This prints both, beside SELECT 1
and a one-row insert, on the embedded Postgres of a fresh `memgate up`.

    .venv/bin/python bench/postgres_roundtrips.py [--count 300] [--history 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import uvloop

from memgate_core.events import ExchangeCompleted, MessageRecord
from memgate_core.ids import new_id
from memgate_store import threads
from memgate_store.threads import Unseen
from memgate_testing.gateway import GatewayProcess


def exchange() -> ExchangeCompleted:
    now = time.time()
    return ExchangeCompleted(new_id("exc"), "default", "bench-user", "bench-thread", "fake/bench", "fake", [
        MessageRecord(new_id("msg"), "user", "Say ok.", now), MessageRecord(new_id("msg"), "assistant", "ok", now + 1e-6),
    ], now, now)


async def timed(call: Callable[[], Awaitable[object]], *, count: int, pause: float) -> tuple[float, float]:
    samples = []
    for _ in range(count):
        if pause:
            await asyncio.sleep(pause)
        started = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return samples[len(samples) // 2], samples[int(len(samples) * 0.99)]


async def measure(url: str, args: argparse.Namespace) -> None:
    conn = await asyncpg.connect(url)
    await conn.execute("CREATE TABLE bench_one_row (id serial PRIMARY KEY, v text)")  # (a temp table skips the WAL)
    await conn.executemany(threads._RECORD_EXCHANGE,
                           [threads._record_arguments(exchange(), "", None) for _ in range(args.history)])
    xmax = await conn.fetchval("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint")
    calls: dict[str, Callable[[], Awaitable[object]]] = {
        "SELECT 1": lambda: conn.fetchval("SELECT 1"),
        "one-row insert, durable commit": lambda: conn.execute("INSERT INTO bench_one_row (v) VALUES ('x')"),
        "view refresh (changes)": lambda: conn.fetch(
            threads._CHANGES, *threads._changes_arguments("default", "bench-thread", "bench-user", Unseen(xmax, []))),
        "record an exchange": lambda: conn.fetchval(
            threads._RECORD_EXCHANGE, *threads._record_arguments(exchange(), "", None)),
    }
    print(f"\n{'round trip':<34}{'back to back p50/p99 ms':>26}{'every 10 ms p50/p99 ms':>26}")
    for name, call in calls.items():
        fast = await timed(call, count=args.count, pause=0)
        paced = await timed(call, count=args.count, pause=0.01)
        print(f"{name:<34}{fast[0]:>15.3f}{fast[1]:>11.3f}{paced[0]:>15.3f}{paced[1]:>11.3f}")
    await conn.execute("DROP TABLE bench_one_row")
    await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--history", type=int, default=3000, help="exchanges already in the thread")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        gateway = GatewayProcess(Path(tmp) / "data", env={"MEMGATE_LOG_LEVEL": "WARNING"}, traces=False).start()
        try:
            uvloop.run(measure(gateway.runtime()["database_url"], args))
        finally:
            gateway.stop()


if __name__ == "__main__":
    main()
