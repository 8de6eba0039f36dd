"""Recall on a thread longer than its budget, over real Postgres and a real Qdrant Edge shard."""

from __future__ import annotations

import time

from memgate_context.assemble import ContextAssembler
from memgate_core.context import ContextLookup
from memgate_core.events import ExchangeCompleted, MessageRecord
from memgate_core.ids import new_id
from memgate_observer.indexing import MessageIndexer
from memgate_store import Stores
from memgate_vectors import EdgeVectorIndex, Embedder

COLOURS = ["blue", "red", "green", "yellow", "white", "black", "orange", "purple"]


async def _long_thread(stores: Stores, index: EdgeVectorIndex, embedder: Embedder) -> tuple[str, str]:
    """80 turns about numbered items, stored and indexed the way the observer does it."""
    tenant, thread = new_id("t"), "th"
    await stores.threads.bind(tenant, thread, "res")
    start = time.time() - 86_400
    records = []
    for i in range(80):
        records += [MessageRecord(new_id("msg"), "user", f"My item number {i} is painted {COLOURS[i % 8]}.", start + i * 60),
                    MessageRecord(new_id("msg"), "assistant", f"Noted: item {i} is {COLOURS[i % 8]}.", start + i * 60 + 1)]
    exchange = ExchangeCompleted(new_id("exc"), tenant, "res", thread, "fake/m", "fake", records,
                                 records[0].created_at, records[-1].created_at)
    await stores.threads.record(exchange)
    await index.upsert((await MessageIndexer(stores.threads, embedder).points([exchange])).points)
    return tenant, thread


async def test_a_question_recalls_old_turns_and_a_reply_of_no_words_recalls_nothing(
        stores: Stores, index: EdgeVectorIndex) -> None:
    embedder = Embedder()
    tenant, thread = await _long_thread(stores, index, embedder)
    assembler = ContextAssembler(stores, index, embedder)

    asked = await assembler.lookup(ContextLookup(tenant, "res", thread, "Which colour is item number 3 painted?", 600))
    assert "My item number 3 is painted yellow." in [m.content for m in asked.recalled_messages]
    assert "My item number 3 is painted yellow." in asked.text
    assert asked.tokens <= 600

    # "ok" names nothing to rank by: the block is the thread's newest turns, by recency.
    for reply in ("ok", "Say ok.", "Yes!"):
        block = await assembler.lookup(ContextLookup(tenant, "res", thread, reply, 600))
        assert block.recalled_messages == [] and block.related_observations == []
        assert block.recent_messages[-1].content == "Noted: item 79 is purple."
        assert "item number 3 is" not in block.text


async def test_the_threads_own_messages_do_not_crowd_out_other_threads(stores: Stores, index: EdgeVectorIndex) -> None:
    """A short thread goes in whole; recall's candidates go to the resource's other threads
    even when this thread's own messages match the question best."""
    embedder = Embedder()
    tenant, _ = await _long_thread(stores, index, embedder)  # item 7 is purple, in thread "th"
    asking = "asking"
    await stores.threads.bind(tenant, asking, "res")
    now = time.time()
    records = [MessageRecord(new_id("msg"), "user", "Item 7 colour?", now + i) for i in range(85)]
    exchange = ExchangeCompleted(new_id("exc"), tenant, "res", asking, "fake/m", "fake", records,
                                 records[0].created_at, records[-1].created_at)
    await stores.threads.record(exchange)
    await index.upsert((await MessageIndexer(stores.threads, embedder).points([exchange])).points)

    block = await ContextAssembler(stores, index, embedder).lookup(
        ContextLookup(tenant, "res", asking, "Which colour is item number 7 painted?", 2000))
    assert len(block.recent_messages) == 85  # the whole thread
    assert "My item number 7 is painted purple." in [m.content for m in block.recalled_messages]


async def test_a_block_stays_within_its_budget_when_the_thread_grows_during_recall(
        stores: Stores, index: EdgeVectorIndex) -> None:
    """A lookup works on the view as it read it: another lookup of the thread appending a new
    exchange while this one awaits recall does not put that exchange in (uncounted)."""
    embedder = Embedder()
    tenant, _ = await _long_thread(stores, index, embedder)  # another thread of the resource: recall runs
    asking = "asking"
    await stores.threads.bind(tenant, asking, "res")

    async def say(n: int, at: float) -> None:
        records = [MessageRecord(new_id("msg"), "user", f"Note {at + i}: " + "the quick brown fox jumps " * 10, at + i)
                   for i in range(n)]
        await stores.threads.record(ExchangeCompleted(new_id("exc"), tenant, "res", asking, "fake/m", "fake", records,
                                                      records[0].created_at, records[-1].created_at))

    await say(20, time.time() - 3600)
    assembler = ContextAssembler(stores, index, embedder)
    search = assembler.recall.search
    grown: list[int] = []

    async def search_while_the_thread_grows(q: ContextLookup, *, skip: set[str]) -> list:  # type: ignore[type-arg]
        if not grown:
            grown.append(1)
            await say(20, time.time())
            other = await assembler.lookup(ContextLookup(tenant, "res", asking, "ok", 2000))
            assert len(other.recent_messages) > 20  # the view grew
        return await search(q, skip=skip)

    assembler.recall.search = search_while_the_thread_grows  # type: ignore[method-assign]
    block = await assembler.lookup(ContextLookup(tenant, "res", asking, "Which colour is item number 7 painted?", 2000))
    assert grown and block.tokens <= 2000, block.tokens
