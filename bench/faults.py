"""Faults under load: is every answered exchange remembered, and does memgate recover alone?

A steady memory-on load (each request a unique marker, over a few threads) runs against
`memgate up` while, one after the other: the embedded nats-server is killed (SIGKILL), the
embedded postgres is killed, and the whole `memgate up` process is killed and started again
on its data dir (as a process manager would; the observer runs inside that process, so its
crash is this one). Then, once the outbox and the observer are idle, every exchange that got
a 200 is looked up in Postgres: stored, and observed.

For each fault it prints the requests that failed, the seconds without a successful answer,
the answered exchanges lost (must be 0) and whether chat came back without a person.

    .venv/bin/python bench/faults.py [--rate 20] [--settle 8]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx

from memgate_testing.fake_provider import FakeProviderProcess
from memgate_testing.gateway import GatewayProcess

THREADS = 6


@dataclass
class Outcome:
    marker: int
    sent_at: float
    status: int  # 0: no answer (connection refused, reset, timeout)
    done_at: float


@dataclass
class Window:
    name: str
    started: float
    ended: float = 0.0
    outcomes: list[Outcome] = field(default_factory=list)


class Load:
    """Open loop: one request every 1/rate s, whatever the answers do."""

    def __init__(self, gateway: GatewayProcess, rate: float) -> None:
        self.gateway = gateway
        self.rate = rate
        self.outcomes: list[Outcome] = []
        self._next = 0
        self._running = False

    async def run(self) -> None:
        self._running = True
        tasks = set()
        async with httpx.AsyncClient(timeout=15) as client:
            started = time.monotonic()
            while self._running:
                n = self._next
                self._next += 1
                task = asyncio.create_task(self._one(client, n))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                await asyncio.sleep(max(0.0, started + self._next / self.rate - time.monotonic()))
            await asyncio.gather(*tasks)

    def stop(self) -> None:
        self._running = False

    async def _one(self, client: httpx.AsyncClient, n: int) -> None:
        sent = time.monotonic()
        status = 0
        try:
            response = await client.post(
                f"{self.gateway.base_url}/chat/completions", headers={
                    **self.gateway.headers(), "x-thread-id": f"fault-{n % THREADS}", "x-resource-id": "faults"},
                json={"model": "fake/bench", "messages": [{"role": "user", "content": f"Remember marker m{n}x."}]})
            status = response.status_code
        except httpx.HTTPError:
            pass
        self.outcomes.append(Outcome(n, sent, status, time.monotonic()))


def engine_pid(path: Path) -> int:
    return int(path.read_text().split()[0])


async def settle(seconds: float) -> None:
    await asyncio.sleep(seconds)


async def run(rate: float, settle_s: float) -> None:
    with tempfile.TemporaryDirectory() as tmp, FakeProviderProcess(fast=True) as fake:
        data_dir = Path(tmp) / "data"
        port = None
        gateway = GatewayProcess(data_dir, provider_url=fake.base_url, traces=False,
                                 env={"MEMGATE_OBSERVER_MODEL": "local"}).start()
        port = gateway.port
        load = Load(gateway, rate)
        runner = asyncio.create_task(load.run())
        windows: list[Window] = []

        async def fault(name: str, act) -> None:  # type: ignore[no-untyped-def]
            window = Window(name, time.monotonic())
            await asyncio.to_thread(act)
            await settle(settle_s)
            window.ended = time.monotonic()
            windows.append(window)

        def restart_whole() -> None:
            assert gateway.proc is not None
            gateway.proc.kill()
            gateway.proc.wait()
            gateway.proc = None
            gateway.start(timeout=120)  # a process manager's restart

        try:
            await settle(settle_s)  # steady state
            baseline = Window("(no fault)", time.monotonic() - settle_s, time.monotonic())
            await fault("nats-server killed", lambda: os.kill(engine_pid(data_dir / "nats" / "nats-server.pid"),
                                                              signal.SIGKILL))
            await fault("postgres killed", lambda: os.kill(engine_pid(data_dir / "postgres" / "postmaster.pid"),
                                                           signal.SIGKILL))
            await fault("memgate up killed, restarted", restart_whole)
            load.stop()
            await runner
            assert gateway.port == port

            database_url = gateway.runtime()["database_url"]
            lost = await check_remembered(database_url, load.outcomes)
        finally:
            gateway.stop()

    for w in [baseline, *windows]:
        w.outcomes = [o for o in load.outcomes if w.started <= o.sent_at < w.ended]
    print(f"\nfault bench: {len(load.outcomes)} requests at {rate:g}/s over {THREADS} threads, "
          f"{sum(o.status == 200 for o in load.outcomes)} answered\n")
    print(f"{'fault':<34} {'requests':>8} {'failed':>6} {'outage s':>8} {'lost':>5}  recovered alone")
    for w in [baseline, *windows]:
        failed = [o for o in w.outcomes if o.status != 200]
        ok = [o for o in w.outcomes if o.status == 200]
        outage = (min((o.sent_at for o in ok if o.sent_at > max(f.sent_at for f in failed)), default=w.ended)
                  - min(f.sent_at for f in failed)) if failed else 0.0
        recovered = any(o.status == 200 for o in w.outcomes if o.sent_at > w.ended - 2)
        w_lost = [m for m in lost if any(o.marker == m for o in w.outcomes)]
        print(f"{w.name:<34} {len(w.outcomes):>8} {len(failed):>6} {outage:>8.1f} {len(w_lost):>5}  "
              f"{'yes' if recovered else 'NO'}")
    statuses: dict[int, int] = {}
    for o in load.outcomes:
        if o.status != 200:
            statuses[o.status] = statuses.get(o.status, 0) + 1
    print(f"\nfailed requests by status (0 = no answer): {dict(sorted(statuses.items()))}")
    print(f"answered exchanges lost: {len(lost)}" + (f" (markers {lost[:20]})" if lost else ""))


async def check_remembered(database_url: str, outcomes: list[Outcome], timeout: float = 180.0) -> list[int]:
    """Markers of answered exchanges not stored or not observed, once the outbox and the
    observer are idle (or `timeout` passed)."""
    conn = await asyncpg.connect(database_url)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            backlog = await conn.fetchval("SELECT count(*) FROM outbox")
            unobserved = await conn.fetchval(
                "SELECT count(DISTINCT m.exchange_id) FROM messages m WHERE NOT EXISTS "
                "(SELECT 1 FROM observed_exchanges o WHERE o.tenant = m.tenant AND o.exchange_id = m.exchange_id)")
            if backlog == 0 and unobserved == 0:
                break
            await asyncio.sleep(1)
        rows = await conn.fetch(
            "SELECT m.content, EXISTS (SELECT 1 FROM observed_exchanges o WHERE o.tenant = m.tenant "
            "AND o.exchange_id = m.exchange_id) AS observed FROM messages m WHERE m.role = 'user'")
    finally:
        await conn.close()
    remembered = {int(found.group(1)) for r in rows
                  if r["observed"] and (found := re.fullmatch(r"Remember marker m(\d+)x\.", r["content"]))}
    return sorted(o.marker for o in outcomes if o.status == 200 and o.marker not in remembered)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=20.0, help="requests per second")
    parser.add_argument("--settle", type=float, default=8.0, help="seconds of load after each fault")
    args = parser.parse_args()
    asyncio.run(run(args.rate, args.settle))


if __name__ == "__main__":
    main()
