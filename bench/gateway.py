"""Added latency of memgate, side by side in one run.

Starts a fast fake provider (fixed tiny answer, no think time) and `memgate up`, then sends
the same chat request sequentially (a) straight to the provider, (b) through memgate with
memory off, (c) through memgate with memory on, on a thread with prior history, and
prints p50/p99 for each and memgate's added latency (via memgate minus direct).

    .venv/bin/python bench/gateway.py [--requests 500] [--history 200]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from memgate_testing.fake_provider import FakeProviderProcess
from memgate_testing.gateway import GatewayProcess

BODY = {"model": "fake/bench", "messages": [{"role": "user", "content": "Say ok."}]}


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def run(client: httpx.Client, url: str, headers: dict[str, str], n: int) -> list[float]:
    for _ in range(20):  # warm-up: connections, caches
        client.post(url, json=BODY, headers=headers).raise_for_status()
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        client.post(url, json=BODY, headers=headers).raise_for_status()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--history", type=int, default=200, help="prior turns on the memory thread")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, FakeProviderProcess(fast=True) as provider:
        started = time.perf_counter()
        gateway = GatewayProcess(Path(tmp) / "data", provider_url=provider.base_url).start()
        cold_start = time.perf_counter() - started
        try:
            auth = gateway.headers()
            memory = {**auth, "x-thread-id": "bench-thread", "x-resource-id": "bench-user"}
            with httpx.Client(timeout=30) as client:
                for i in range(args.history):
                    client.post(f"{gateway.base_url}/chat/completions", headers=memory, json={
                        "model": "fake/bench",
                        "messages": [{"role": "user", "content": f"Remember fact {i}: my item {i} is blue."}],
                    }).raise_for_status()
                time.sleep(2)  # let the observer catch up: the measured path is the hot one
                results = {
                    "direct to provider": run(client, f"{provider.base_url}/chat/completions",
                                              {"Authorization": "Bearer x"}, args.requests),
                    "memgate, memory off": run(client, f"{gateway.base_url}/chat/completions", auth, args.requests),
                    "memgate, memory on": run(client, f"{gateway.base_url}/chat/completions", memory, args.requests),
                }
        finally:
            gateway.stop()

    direct = results["direct to provider"]
    print(f"memgate up ready in {cold_start:.2f} s (cold: new data dir)")
    print(f"{'path':<24}{'p50 ms':>10}{'p99 ms':>10}{'mean ms':>10}{'added p50':>12}{'added p99':>12}")
    for name, samples in results.items():
        print(f"{name:<24}{percentile(samples, 50):>10.2f}{percentile(samples, 99):>10.2f}"
              f"{statistics.mean(samples):>10.2f}{percentile(samples, 50) - percentile(direct, 50):>12.2f}"
              f"{percentile(samples, 99) - percentile(direct, 99):>12.2f}")


if __name__ == "__main__":
    main()
