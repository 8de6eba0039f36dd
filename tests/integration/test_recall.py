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
    await index.upsert(await MessageIndexer(stores.threads, embedder).points([exchange]))
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
    await index.upsert(await MessageIndexer(stores.threads, embedder).points([exchange]))

    block = await ContextAssembler(stores, index, embedder).lookup(
        ContextLookup(tenant, "res", asking, "Which colour is item number 7 painted?", 2000))
    assert len(block.recent_messages) == 85  # the whole thread
    assert "My item number 7 is painted purple." in [m.content for m in block.recalled_messages]
