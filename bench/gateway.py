"""memgate's added latency and throughput, side by side in one run on this machine.

Three paths get the same chat request: (1) straight to a fast fake provider (fixed tiny
answer, zero think time), (2) through memgate with memory off, (3) through memgate with
memory on, on a thread that already holds a few hundred messages and observations; and a
fourth row asks a question about another such thread's past ("recall").

For each: p50/p99 latency at a fixed moderate rate (open loop), streaming time to first
byte at the same rate, and throughput at saturation (wrk). Added = via memgate - direct.
Saturation with memory on is measured twice: every request on the one hot thread (its
turns serialise on the thread's row and view), and spread over --threads conversations
that each hold the same history (what many users at once look like).

    make bench            # or: .venv/bin/python bench/gateway.py [--rate 100] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import httpx
from load import fixed_rate, saturation

from memgate_testing.fake_provider import FakeProviderProcess
from memgate_testing.gateway import GatewayProcess

BODY = {"model": "fake/bench", "messages": [{"role": "user", "content": "Say ok."}]}
# A question about a thread's past, on a thread of --history turns (the memory-on runs grow
# theirs by thousands of "Say ok." exchanges): recall finds relevant turns. The same text each
# time, so its embedding is cached: this row is recall's cost beside the embedding.
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--history", type=int, default=150, help="prior turns (2 messages each) on the memory thread")
    parser.add_argument("--saturation-seconds", type=int, default=10)
    parser.add_argument("--threads", type=int, default=16, help="conversations for the spread saturation run")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, FakeProviderProcess(fast=True) as provider:
        started = time.perf_counter()
        gateway = GatewayProcess(Path(tmp) / "data", provider_url=provider.base_url,
                                 env={"MEMGATE_OBSERVER_MODEL": "local", "MEMGATE_LOG_LEVEL": "WARNING"}, traces=False).start()
        cold = time.perf_counter() - started
        try:
            auth = gateway.headers()
            memory = {**auth, "x-thread-id": "bench-thread", "x-resource-id": "bench-user"}
            spread = [{**auth, "x-thread-id": f"bench-thread-{i}", "x-resource-id": f"bench-user-{i}"}
                      for i in range(args.threads)]
            seed(gateway, [memory, *spread], args.history)
            paths = {
                "direct": (f"{provider.base_url}/chat/completions", {"Authorization": "Bearer bench"}, BODY),
                "memory off": (f"{gateway.base_url}/chat/completions", auth, BODY),
                "memory on": (f"{gateway.base_url}/chat/completions", memory, BODY),
                # (on a thread of its own: the memory-on runs above grew bench-thread by thousands of exchanges)
                "recall": (f"{gateway.base_url}/chat/completions", spread[0], RECALL_BODY),
            }
            rows = {}
            for name, (url, headers, body) in paths.items():
                asyncio.run(fixed_rate(url, headers, body, rate=args.rate, seconds=2))  # warm up
                plain = asyncio.run(fixed_rate(url, headers, body, rate=args.rate, seconds=args.seconds))
                ttfb = asyncio.run(fixed_rate(url, headers, body, rate=args.rate, seconds=args.seconds, stream=True))
                rps = saturation(url, headers, body, seconds=args.saturation_seconds)
                rows[name] = (plain, ttfb, rps)
            url = f"{gateway.base_url}/chat/completions"
            spread_rps = saturation(url, spread, BODY, seconds=args.saturation_seconds)
            accounting = recorded(gateway, [h["x-thread-id"] for h in (memory, *spread)])
        finally:
            gateway.stop()

    print(f"\nmemgate up: ready {cold:.2f} s after start (new data dir); history {args.history} turns")
    print(f"fixed rate {args.rate:.0f} req/s for {args.seconds:.0f} s per path; saturation with wrk, 32 connections\n")
    head = f"{'path':<12}{'p50 ms':>9}{'p99 ms':>9}{'+p50':>8}{'+p99':>8}{'ttfb p50':>10}{'ttfb p99':>10}{'+ttfb50':>9}{'req/s':>9}{'errors':>8}"
    print(head)
    base_plain, base_ttfb, _ = rows["direct"]
    for name, (plain, ttfb, rps) in rows.items():
        print(f"{name:<12}{plain.pct(50):>9.2f}{plain.pct(99):>9.2f}"
              f"{plain.pct(50) - base_plain.pct(50):>8.2f}{plain.pct(99) - base_plain.pct(99):>8.2f}"
              f"{ttfb.pct(50):>10.2f}{ttfb.pct(99):>10.2f}{ttfb.pct(50) - base_ttfb.pct(50):>9.2f}"
              f"{rps:>9.0f}{plain.errors + ttfb.errors:>8}")
    print(f"recall: memory on, asking about the past of a thread of {args.history} turns (recall runs; the "
          "query's embedding is cached)")
    print(f"memory on, spread over {args.threads} threads of {args.history} turns each: {spread_rps:.0f} req/s "
          f"at saturation (the table's memory-on row: every request on one thread)")
    print(accounting)


if __name__ == "__main__":
    main()
