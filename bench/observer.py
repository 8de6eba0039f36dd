"""Observer throughput: a backlog of exchanges in JetStream, consumed by the real observer.

Real engines in this process (embedded Postgres, NATS JetStream, Qdrant Edge, the ONNX
embedder). Publishes THREADS x PER_THREAD exchanges, starts the consumer and times until all
are observed. `local` uses the no-LLM observer; `llm` uses the LLM observer against the fake
provider (instant answers), so it measures memgate's own cost per exchange.

    .venv/bin/python bench/observer.py local llm [--threads 100] [--per-thread 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import tempfile
import time
import uuid
from itertools import groupby
from pathlib import Path

from memgate_bus import Bus
from memgate_bus.subjects import EXCHANGE_SUBJECT
from memgate_cli.embedded import EmbeddedNats, EmbeddedPostgres
from memgate_core.events import ExchangeCompleted, MessageRecord, exchange_encoder
from memgate_observer.consumer import ExchangeConsumer
from memgate_observer.handler import ExchangeHandler
from memgate_observer.llm import LLMObserver
from memgate_observer.local import LocalObserver
from memgate_providers import ProviderClient, ProviderRegistry, Timeouts
from memgate_store import Stores, migrate
from memgate_testing.fake_provider import FakeProvider
from memgate_vectors import EdgeVectorIndex, Embedder

USER = ("My name is {n} and I live in Berlin. I am allergic to peanuts. "
        "Please plan a trip to Lisbon next Friday for {i} people.")
ASSISTANT = ("I'll draft an itinerary for Lisbon by tomorrow. The flight from Berlin to Lisbon takes "
             "about 3.5 hours. I recommend staying in Alfama.")


def observer_answer(body: dict) -> str:
    """Plays the Observer LLM: one well-formed observation per message it was shown."""
    lines = body["messages"][1]["content"].splitlines()
    messages = [json.loads(line) for line in lines[lines.index("NEW MESSAGES:") + 1:]]
    out = []
    for day, group in groupby(messages, key=lambda m: m["sent"][:10]):
        out.append(f"## {day}")
        out += [f"- [high] {m['sent'][11:16]} {m['role']} said: {m['text'][:70]} {{{m['id']}}}" for m in group]
    out.append("Current task: Planning a trip.")
    return "\n".join(out)


async def run(kind: str, threads: int, per_thread: int, tmp: Path) -> None:
    pg, nats = EmbeddedPostgres(tmp / f"{kind}-pg"), EmbeddedNats(tmp / f"{kind}-nats")
    url, nats_url = pg.start(), nats.start()
    fake = FakeProvider(responder=observer_answer).start() if kind == "llm" else None
    try:
        await migrate(url)
        stores = await Stores.connect(url, max_size=20)
        bus = await Bus.connect(nats_url, name="bench")
        await bus.ensure_streams()
        index = EdgeVectorIndex(tmp / f"{kind}-vectors")
        await index.ensure()
        embedder = Embedder()
        await embedder.embed_async(["warm up"])
        client = None
        if fake is None:
            observer = LocalObserver()
        else:
            registry = ProviderRegistry.from_env({"MEMGATE_PROVIDER_FAKE_BASE_URL": fake.base_url,
                                                  "MEMGATE_PROVIDER_FAKE_API_KEY": "bench"})
            client = ProviderClient(registry, timeouts=Timeouts(connect=2, first_byte=30))
            observer = LLMObserver(client, "fake/observer")
        handler = ExchangeHandler(stores, index, embedder, observer, activation_tokens=30_000, keep_raw_tokens=4_000)

        now, total = time.time(), threads * per_thread
        for i in range(per_thread):
            for t in range(threads):
                event = ExchangeCompleted(
                    f"exc_{uuid.uuid4().hex}", "bench", "res", f"th{t}", "fake/chat", "fake",
                    [MessageRecord(f"msg_{uuid.uuid4().hex}", "user", USER.format(n=f"User{t}", i=i), now + i),
                     MessageRecord(f"msg_{uuid.uuid4().hex}", "assistant", ASSISTANT, now + i + 1)],
                    now + i, now + i + 1)
                await stores.threads.record(event)  # as the edge does; then the event, as its relay does
                await bus.js.publish(EXCHANGE_SUBJECT, exchange_encoder.encode(event.recorded()))

        consumer = ExchangeConsumer(bus, handler, debounce=0.5, max_batch=32, concurrency=8)
        started, cpu_started = time.perf_counter(), time.process_time()
        await consumer.start()
        while await stores.db.pool.fetchval("SELECT count(*) FROM observed_exchanges") < total:
            await asyncio.sleep(0.05)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        observations = await stores.db.pool.fetchval("SELECT count(*) FROM observations")
        await consumer.stop()
        calls = f", {len(fake.requests)} LLM calls" if fake else ""
        print(f"{kind:<6} {threads} threads x {per_thread}: {total} exchanges, {observations} observations in "
              f"{elapsed:.2f} s -> {total / elapsed:.1f} exchanges/s{calls}; "
              f"{cpu / total * 1000:.1f} ms of this process's CPU per exchange", flush=True)
        if client is not None:
            await client.close()
        await bus.close()
        await index.close()
        await stores.close()
    finally:
        if fake is not None:
            fake.stop()
        nats.stop()
        pg.stop()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kinds", nargs="+", choices=["local", "llm"])
    parser.add_argument("--threads", type=int, default=100)
    parser.add_argument("--per-thread", type=int, default=10)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.kinds:
            await run(kind, args.threads, args.per_thread, Path(tmp))


if __name__ == "__main__":
    asyncio.run(main())
