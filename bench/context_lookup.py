"""Context lookup latency with 20,000 messages and 10,000 observations in one resource.

Real engines in this process: embedded Postgres, Qdrant Edge and NATS. Seeds a resource
with N observations and M messages spread over many threads (Postgres rows + dense/sparse
vectors, as the observer writes them), the looked-up thread holding far more than the
budget, then times lookups of that thread (after WARMUP lookups per path that are not
counted): (a) the assembler called directly, (b) the full request/reply hop the edge makes
over NATS. Every lookup asks a different question, so
recall (query embedding + both rankings + fusion + assembly) runs each time.

    .venv/bin/python bench/context_lookup.py [--observations 10000] [--messages 20000] [--lookups 300]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path

from memgate_bus import Bus
from memgate_cli.embedded import EmbeddedNats, EmbeddedPostgres
from memgate_context import ContextService
from memgate_context.assemble import ContextAssembler
from memgate_core.context import ContextLookup
from memgate_core.events import ExchangeCompleted, MessageRecord
from memgate_core.ids import stable_uuid
from memgate_core.tokens import count_tokens
from memgate_edge.context_client import ContextClient
from memgate_observer.indexing import MessageIndexer
from memgate_store import Stores, migrate
from memgate_vectors import EdgeVectorIndex, Embedder, VectorPoint

TENANT, RESOURCE = "bench", "user-10k"
# Lookups not counted, per path: the first loads the thread's 2,000 messages into the view
# cache (a cold start, not the steady state the figures are about).
WARMUP = 10
SUBJECTS = ["sister", "dentist", "landlord", "manager", "gym", "bank", "dog", "car", "flight", "garden"]
VERBS = ["moved to", "booked", "cancelled", "prefers", "asked about", "paid", "visited", "forgot", "fixed", "ordered"]
OBJECTS = ["Lisbon", "a blue bike", "the 7am train", "oat milk", "order ZX-{n}", "room {n}", "the Friday call",
           "a new laptop", "tickets for {n} people", "the annual review"]


def sentence(rng: random.Random, n: int) -> str:
    obj = rng.choice(OBJECTS).format(n=n)
    return f"User's {rng.choice(SUBJECTS)} {rng.choice(VERBS)} {obj} (note {n})."


def pct(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def message_text(rng: random.Random, n: int) -> str:
    obj = rng.choice(OBJECTS).format(n=n)
    return f"My {rng.choice(SUBJECTS)} {rng.choice(VERBS)} {obj} this week, can you remember that? ({n})"


async def seed_messages(stores: Stores, index: EdgeVectorIndex, embedder: Embedder, m: int, threads: int,
                        own: int) -> None:
    """`own` messages in the looked-up thread t0, the rest over the other threads; indexed
    the way the observer indexes them (a point per message, with the one it follows)."""
    rng = random.Random(5)
    indexer = MessageIndexer(stores.threads, embedder)
    start = time.time() - 86_400 * 30
    for t in range(threads):
        count = own if t == 0 else (m - own) // max(threads - 1, 1)
        records = [MessageRecord(f"m-{t}-{i}", "user" if i % 2 == 0 else "assistant", message_text(rng, i),
                                 start + i * 60) for i in range(count)]
        for chunk in range(0, len(records), 200):
            part = records[chunk:chunk + 200]
            exchange = ExchangeCompleted(f"x-{t}-{chunk}", TENANT, RESOURCE, f"t{t}", "bench", "bench", part,
                                         part[0].created_at, part[-1].created_at)
            await stores.threads.record(exchange)
            await index.upsert((await indexer.points([exchange])).points)


async def seed(stores: Stores, index: EdgeVectorIndex, embedder: Embedder, n: int, threads: int) -> None:
    rng = random.Random(7)
    texts = [sentence(rng, i) for i in range(n)]
    vectors = await embedder.embed_async(texts)
    async with stores.db.pool.acquire() as conn:
        await conn.executemany("INSERT INTO threads (tenant, thread_id, resource_id) VALUES ($1, $2, $3)",
                               [(TENANT, f"t{t}", RESOURCE) for t in range(threads)])
        rows, points = [], []
        for i, (text, vector) in enumerate(zip(texts, vectors)):
            thread, oid = f"t{i % threads}", stable_uuid(TENANT, "bench", str(i))
            rows.append((oid, TENANT, thread, RESOURCE, f"exc{i}", text, "medium", date(2026, 11, 1 + i % 25),
                         count_tokens(text), [f"m{i}"]))
            points.append(VectorPoint(oid, vector, {"tenant": TENANT, "resource_id": RESOURCE, "thread_id": thread,
                                                    "observation_id": oid, "text": text, "priority": "medium",
                                                    "observed_on": "2026-11-01"}))
        await conn.copy_records_to_table("observations", records=rows, columns=[
            "id", "tenant", "thread_id", "resource_id", "exchange_id", "text", "priority", "observed_on", "tokens",
            "source_message_ids"])
    await index.upsert(points)
    # No optimize(): memgate does not run it (it holds the GIL for seconds at this size), so
    # this measures the index as the gateway really searches it.
    # The thread we look up holds a short raw history of its own.
    now = time.time()
    live = [MessageRecord(f"live{i}", "user" if i % 2 == 0 else "assistant", f"Live message {i} about the garden.",
                          now + i) for i in range(20)]
    await stores.threads.record(ExchangeCompleted("exc-live", TENANT, RESOURCE, "t0", "bench", "bench", live, now,
                                                  now + 20))


async def main(n: int, m: int, own: int, lookups: int, threads: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        pg, nats = EmbeddedPostgres(Path(tmp)), EmbeddedNats(Path(tmp))
        url, nats_url = pg.start(), nats.start()
        try:
            await migrate(url)
            stores = await Stores.connect(url)
            index = EdgeVectorIndex(Path(tmp) / "qdrant")
            await index.ensure()
            embedder = Embedder()
            started = time.perf_counter()
            await seed(stores, index, embedder, n, threads)
            await seed_messages(stores, index, embedder, m, threads, own)
            print(f"seeded {n} observations and {m} messages in {threads} threads of one resource "
                  f"({own} messages in the looked-up thread) in {time.perf_counter() - started:.1f} s")

            rng = random.Random(11)
            questions = [f"What did my {rng.choice(SUBJECTS)} say about {rng.choice(OBJECTS).format(n=rng.randrange(n))}?"
                         for _ in range((lookups + WARMUP) * 2)]
            warmup, questions = questions[: 2 * WARMUP], questions[2 * WARMUP:]
            assembler = ContextAssembler(stores, index, embedder)
            for q in warmup[:WARMUP]:
                await assembler.lookup(ContextLookup(TENANT, RESOURCE, "t0", q, 2000))
            direct, related, recalled, tokens = [], [], [], []
            for q in questions[:lookups]:
                t = time.perf_counter()
                block = await assembler.lookup(ContextLookup(TENANT, RESOURCE, "t0", q, 2000))
                direct.append((time.perf_counter() - t) * 1000)
                related.append(len(block.related_observations))
                recalled.append(len(block.recalled_messages))
                tokens.append(block.tokens)

            bus = await Bus.connect(nats_url, name="bench")
            service = ContextService(bus, stores, index, embedder)
            await service.start()
            client = ContextClient(bus, timeout_ms=2000)
            for q in warmup[WARMUP:]:
                await client.lookup(ContextLookup(TENANT, RESOURCE, "t0", q, 2000))
            hop = []
            for q in questions[lookups:]:
                result = await client.lookup(ContextLookup(TENANT, RESOURCE, "t0", q, 2000))
                assert result.block is not None, result.degraded_reason
                hop.append(result.elapsed_ms)
            await service.stop()
            await bus.close()
            await index.close()
            await stores.close()
        finally:
            nats.stop()
            pg.stop()

    print(f"per lookup (budget 2000): {statistics.mean(recalled):.1f} recalled messages, "
          f"{statistics.mean(related):.1f} recalled observations, {statistics.median(tokens):.0f} tokens (median)")
    for name, samples in (("assembler (in process)", direct), ("edge -> NATS -> context", hop)):
        print(f"{name:<26} p50 {pct(samples, 50):6.2f} ms   p99 {pct(samples, 99):6.2f} ms   ({len(samples)} lookups)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--observations", type=int, default=10_000)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--own-messages", type=int, default=2_000, help="of them, in the looked-up thread")
    parser.add_argument("--lookups", type=int, default=300)
    parser.add_argument("--threads", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(main(args.observations, args.messages, args.own_messages, args.lookups, args.threads))
