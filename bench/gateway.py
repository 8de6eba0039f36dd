"""memgate's added latency and throughput, side by side in one run on this machine.

Three paths get the same chat request: (1) straight to a fast fake provider (fixed tiny
answer, zero think time), (2) through memgate with memory off, (3) through memgate with
memory on, on a thread that already holds a few hundred messages and observations; and a
fourth row asks a question about another such thread's past ("recall").

For each: p50/p99 latency at a fixed moderate rate (open loop), streaming time to first
byte at the same rate, and throughput at saturation (wrk). Added = via memgate - direct.
The fixed-rate, streaming and saturation runs are repeated (--repeat, in turn with the
other gateway's) and the tables show the medians: on a small shared machine one run's p99
moves by milliseconds, and one saturation figure by 10-15%, from run to run. Each run's figures
are printed too. After each saturation run its gateway, Postgres included, is left to finish
the work it put off (the comparison prints how long that took) before anything else runs: a
backlog clearing beside the other gateway's run would be counted against that one.
Saturation with memory on is measured twice: every request on the one hot thread (its
turns serialise on the thread's row and view), and spread over --threads conversations
that each hold the same history (what many users at once look like).

    make bench            # or: .venv/bin/python bench/gateway.py [--rate 100] [--seconds 10]

Side by side with another revision, in one run (`--baseline DIR`: a checkout of it; its
gateway runs on this environment's packages, with its own code first on the path):

    make bench BASELINE=<git revision>
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
from load import Latencies, fixed_rate, saturation

from memgate_testing.fake_provider import FakeProviderProcess
from memgate_testing.gateway import GatewayProcess

BODY = {"model": "fake/bench", "messages": [{"role": "user", "content": "Say ok."}]}
# A question about a thread's past, on a thread of --history turns (the memory-on runs grow
# theirs by thousands of "Say ok." exchanges): recall finds relevant turns. The same text each
# time, so its embedding is cached: this row is recall's cost beside the embedding.
BENCH_RPM = 1_000_000_000  # each rate limit scope's default here: checked on every request, never reached
RECALL_BODY = {"model": "fake/bench", "messages": [{"role": "user", "content": "Which colour is item number 42 painted?"}]}


def seed(gateway: GatewayProcess, header_sets: list[dict[str, str]], turns: int) -> None:
    with httpx.Client(timeout=30) as client:
        for i in range(turns):
            for headers in header_sets:
                client.post(f"{gateway.base_url}/chat/completions", headers=headers, json={
                    "model": "fake/bench",
                    "messages": [{"role": "user", "content": f"Remember this: my item number {i} is painted blue."}],
                }).raise_for_status()
        deadline = time.monotonic() + 120
        for headers in header_sets:  # wait for the observer: the hot path is what we measure
            thread = headers["x-thread-id"]
            while time.monotonic() < deadline:
                info = client.get(f"{gateway.base_url}/memory/threads/{thread}", headers=gateway.headers()).json()
                if info["observation_count"] >= turns:
                    break
                time.sleep(0.2)


def _metric(text: str, name: str, **labels: str) -> float:
    """Sum of a Prometheus counter's samples whose labels include `labels`."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def recorded(gateway: GatewayProcess, threads: list[str], timeout: float = 120.0) -> str:
    """Nothing lost at saturation: every exchange answered with memory on is stored (before
    its response ends) and published (by the outbox relay, just after). Waits for it; says how long."""
    started = time.monotonic()
    with httpx.Client(timeout=30) as client:
        while True:
            metrics = client.get(f"{gateway.url}/metrics").text
            answered = _metric(metrics, "memgate_chat_requests_total", memory="on")
            published = _metric(metrics, "memgate_exchanges_published_total", outcome="published")
            stored = sum(client.get(f"{gateway.base_url}/memory/threads/{thread}",
                                    headers=gateway.headers()).json()["message_count"] for thread in threads) / 2
            waited = time.monotonic() - started
            if answered == published == stored:
                return f"all {answered:.0f} exchanges answered with memory on were published and stored " \
                       f"({waited:.1f} s after the last run)"
            if waited > timeout:
                return f"NOT ALL RECORDED after {waited:.0f} s: {answered:.0f} answered, {published:.0f} " \
                       f"published, {stored:.0f} stored"
            time.sleep(0.5)


def source_path(checkout: Path) -> str:
    """PYTHONPATH that runs a checkout's memgate instead of this one's (its own packages first)."""
    return os.pathsep.join(str(checkout / part) for part in
                           ("libs", "services/edge", "services/observer", "services/context", "services/cli"))


def start(tmp: Path, name: str, provider_url: str, checkout: Path | None) -> Measured:
    # Rate limits stay on where a checkout has them (their check is part of what is measured),
    # far above what wrk sends: a 429 is not an answer (a checkout without them ignores these).
    env = {"MEMGATE_OBSERVER_MODEL": "local", "MEMGATE_LOG_LEVEL": "WARNING",
           **{f"MEMGATE_{scope}_RPM": str(BENCH_RPM) for scope in ("DEFAULT", "MEMORY_READ", "MEMORY_WRITE")},
           **json.loads(os.environ.get("BENCH_GATEWAY_ENV", "{}"))}
    if checkout is not None:
        env["PYTHONPATH"] = source_path(checkout)
    started = time.perf_counter()
    gateway = GatewayProcess(tmp / name, provider_url=provider_url, env=env, traces=False).start()
    return Measured(name, gateway, time.perf_counter() - started)


def settle(gateway: GatewayProcess, *, quiet: float = 0.05, timeout: float = 120.0) -> float:
    """Wait until the gateway and its engines are idle (its observer has caught up), so the
    next measurement, of this gateway or the other, does not share the CPU with its backlog.
    Returns the seconds it was still busy: after a saturation run, the work it put off."""
    started = time.monotonic()
    deadline = started + timeout
    while time.monotonic() < deadline:
        processes = _processes(gateway)  # (anew each time: Postgres starts autovacuum workers as it goes)
        before = _cpu_seconds(processes)
        time.sleep(1.0)
        after = _cpu_seconds(processes)
        if sum(after[pid] - before[pid] for pid in after.keys() & before.keys()) < quiet:
            break
    return max(time.monotonic() - started - 1.0, 0.0)  # (the last, quiet second was not busy)


def _processes(gateway: GatewayProcess) -> list[psutil.Process]:
    """The gateway, what it started, and its embedded Postgres: pg_ctl starts the postmaster
    detached, so it and its workers are not among the gateway's children."""
    pids = [gateway.proc.pid] if gateway.proc else []
    with contextlib.suppress(OSError, ValueError, IndexError):  # (no Postgres of its own, or not up)
        pids.append(int((gateway.data_dir / "postgres" / "postmaster.pid").read_text().split()[0]))
    processes = []
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            root = psutil.Process(pid)
            processes += [root, *root.children(recursive=True)]
    return processes


def _cpu_seconds(processes: list[psutil.Process]) -> dict[int, float]:
    seconds = {}
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:  # (ended meanwhile)
            continue
        seconds[process.pid] = times.user + times.system
    return seconds


@dataclass
class Row:
    """One path's figures on one gateway: each repetition's fixed-rate latencies,
    requests per second at saturation (with the seconds its backlog took to clear after),
    and streamed times to first byte."""

    plain: list[Latencies] = field(default_factory=list)
    rps: list[float] = field(default_factory=list)
    catch_up: list[float] = field(default_factory=list)  # seconds busy after each saturation run
    ttfb: list[Latencies] = field(default_factory=list)

    def pct(self, p: float) -> float:
        """The median over the repetitions of their p-th percentile."""
        return statistics.median(run.pct(p) for run in self.plain)

    def ttfb_pct(self, p: float) -> float:
        """The same for the time to first byte (one run alone was at the mercy of a noisy moment)."""
        return statistics.median(run.pct(p) for run in self.ttfb)

    @property
    def errors(self) -> int:
        return sum(run.errors for run in (*self.plain, *self.ttfb))


@dataclass
class Measured:
    """One gateway's figures: a row per path (fixed rate, streamed, saturation)."""

    name: str
    gateway: GatewayProcess
    cold_s: float
    rows: dict[str, Row] = field(default_factory=dict)
    spread: Row = field(default_factory=Row)  # memory on, saturation only, spread over --threads
    accounting: str = ""


def fixed(url: str, headers: dict[str, str], body: dict, args: argparse.Namespace, *,
          stream: bool = False) -> Latencies:
    return asyncio.run(fixed_rate(url, headers, body, rate=args.rate, seconds=args.seconds, stream=stream))


def measure_paths(targets: list[tuple[Row, str, GatewayProcess | None]], headers: dict[str, str], body: dict,
                  args: argparse.Namespace) -> None:
    """One path on each target (a gateway, or the provider direct): the fixed-rate,
    saturation and streaming runs --repeat times, the targets in turn each time."""
    for _, url, _ in targets:
        asyncio.run(fixed_rate(url, headers, body, rate=args.rate, seconds=2))  # warm up
    for _ in range(args.repeat):
        for row, url, gateway in targets:
            row.plain.append(fixed(url, headers, body, args))
            row.rps.append(saturation(url, headers, body, seconds=args.saturation_seconds))
            if gateway is not None:
                row.catch_up.append(settle(gateway))
            row.ttfb.append(fixed(url, headers, body, args, stream=True))
            if gateway is not None:
                settle(gateway)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=3,
                        help="fixed-rate and saturation runs per path and gateway (the medians are shown)")
    parser.add_argument("--history", type=int, default=150, help="prior turns (2 messages each) on the memory thread")
    parser.add_argument("--saturation-seconds", type=int, default=10)
    parser.add_argument("--threads", type=int, default=16, help="conversations for the spread saturation run")
    parser.add_argument("--baseline", type=Path, help="a checkout of another memgate revision, measured alongside")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, FakeProviderProcess(fast=True) as provider:
        runs = [start(Path(tmp), "this", provider.base_url, None)]
        if args.baseline is not None:
            runs.append(start(Path(tmp), "baseline", provider.base_url, args.baseline.resolve()))
        try:
            auth = runs[0].gateway.headers()  # (the same bootstrap key in each)
            memory = {**auth, "x-thread-id": "bench-thread", "x-resource-id": "bench-user"}
            spread = [{**auth, "x-thread-id": f"bench-thread-{i}", "x-resource-id": f"bench-user-{i}"}
                      for i in range(args.threads)]
            for run in runs:
                seed(run.gateway, [memory, *spread], args.history)
                settle(run.gateway)
            direct = Row()
            measure_paths([(direct, f"{provider.base_url}/chat/completions", None)],
                          {"Authorization": "Bearer bench"}, BODY, args)
            paths = {
                "memory off": (auth, BODY),
                "memory on": (memory, BODY),
                # (on a thread of its own: the memory-on runs above grew bench-thread by thousands of exchanges)
                "recall": (spread[0], RECALL_BODY),
            }
            for name, (headers, body) in paths.items():  # row by row, in turn: drift on a busy machine hits both alike
                targets = [(run.rows.setdefault(name, Row()), f"{run.gateway.base_url}/chat/completions", run.gateway)
                           for run in runs]
                measure_paths(targets, headers, body, args)
            for _ in range(args.repeat):
                for run in runs:  # (each settles after its run, before the other's: see measure_paths)
                    run.spread.rps.append(saturation(f"{run.gateway.base_url}/chat/completions", spread, BODY,
                                                     seconds=args.saturation_seconds))
                    run.spread.catch_up.append(settle(run.gateway))
            for run in runs:
                run.accounting = recorded(run.gateway, [h["x-thread-id"] for h in (memory, *spread)])
        finally:
            for run in runs:
                run.gateway.stop()

    print(f"\nhistory {args.history} turns; fixed rate {args.rate:.0f} req/s for {args.seconds:.0f} s per path, "
          f"and saturation with wrk (32 connections), each {args.repeat} times: the tables show medians")
    for run in runs:
        report(run, direct, args)
    if len(runs) == 2:
        compare(*runs)


def report(run: Measured, direct: Row, args: argparse.Namespace) -> None:
    source = "this checkout" if run.name == "this" else f"baseline {args.baseline}"
    print(f"\n== {source}: memgate up ready {run.cold_s:.2f} s after start (new data dir)\n")
    print(f"{'path':<12}{'p50 ms':>9}{'p99 ms':>9}{'+p50':>8}{'+p99':>8}{'ttfb p50':>10}{'ttfb p99':>10}"
          f"{'+ttfb50':>9}{'req/s':>9}{'errors':>8}   p50/p99 of each run")
    for name, row in {"direct": direct, **run.rows}.items():
        each = "  ".join(f"{r.pct(50):.2f}/{r.pct(99):.2f}" for r in row.plain)
        print(f"{name:<12}{row.pct(50):>9.2f}{row.pct(99):>9.2f}"
              f"{row.pct(50) - direct.pct(50):>8.2f}{row.pct(99) - direct.pct(99):>8.2f}"
              f"{row.ttfb_pct(50):>10.2f}{row.ttfb_pct(99):>10.2f}{row.ttfb_pct(50) - direct.ttfb_pct(50):>9.2f}"
              f"{statistics.median(row.rps):>9.0f}{row.errors:>8}   {each}")
    print(f"recall: memory on, asking about the past of a thread of {args.history} turns (recall runs; the "
          "query's embedding is cached)")
    print(f"memory on, spread over {args.threads} threads of {args.history} turns each: "
          f"{statistics.median(run.spread.rps):.0f} req/s at saturation (the table's memory-on row: every request "
          "on one thread)")
    print(run.accounting)


def compare(this: Measured, baseline: Measured) -> None:
    print("\n== this checkout / baseline, saturation (req/s, medians; then each run's, in the order run, "
          "with the seconds each gateway stayed busy after it: work it put off)")
    pairs = {name: (this.rows[name], baseline.rows[name]) for name in this.rows}
    pairs["memory on, spread"] = (this.spread, baseline.spread)
    for name, (ours, theirs) in pairs.items():
        ours_median, theirs_median = statistics.median(ours.rps), statistics.median(theirs.rps)
        each = "  ".join(f"{a:.0f}/{b:.0f} ({da:.0f}/{db:.0f} s)" for a, b, da, db
                         in zip(ours.rps, theirs.rps, ours.catch_up, theirs.catch_up, strict=True))
        print(f"{name:<20}{ours_median:>9.0f}{theirs_median:>9.0f}{ours_median / theirs_median:>8.0%}   {each}")


if __name__ == "__main__":
    main()
