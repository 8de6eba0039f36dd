"""The context service's cached thread views against real Postgres: deltas, order, reloads."""

from __future__ import annotations

import asyncio
import time

from helpers import backend_waiting_for_a_lock

from memgate_context.view import ThreadViews
from memgate_core.events import MessageRecord
from memgate_core.ids import new_id
from memgate_store import Stores
from memgate_store.threads import NewMessages


async def _say(stores: Stores, tenant: str, thread: str, *texts: str, at: float | None = None,
               ids: list[str] | None = None) -> list[str]:
    when = time.time() - 1000 if at is None else at
    ids = ids or [new_id("msg") for _ in texts]
    records = [MessageRecord(i, "user", text, when + n * 0.001) for n, (i, text) in enumerate(zip(ids, texts))]
    await stores.threads.add_messages(tenant, thread, "res", new_id("exc"), records)
    return ids


def _texts(view) -> list[str]:  # type: ignore[no-untyped-def]
    return [m.item.content for m in view.messages]


async def test_new_messages_arrive_as_a_delta_in_time_order(stores: Stores) -> None:
    tenant, thread = new_id("t"), "th"
    start = time.time() - 1000
    await _say(stores, tenant, thread, "one", "two", at=start)
    views = ThreadViews(stores)
    view = await views.get(tenant, thread, "res")
    assert view is not None and _texts(view) == ["one", "two"] and views.loads == 1

    assert await views.get(tenant, thread, "res") is view and views.hits == 1  # nothing new

    await _say(stores, tenant, thread, "four", at=start + 10)
    view = await views.get(tenant, thread, "res")
    assert view is not None and _texts(view) == ["one", "two", "four"]
    await _say(stores, tenant, thread, "three", at=start + 5)  # a late write from a slow edge
    view = await views.get(tenant, thread, "res")
    assert view is not None and _texts(view) == ["one", "two", "three", "four"]
    assert views.appends == 2 and views.loads == 1  # deltas, not reloads


async def test_a_redelivered_exchange_is_not_duplicated(stores: Stores) -> None:
    tenant, thread = new_id("t"), "th"
    views = ThreadViews(stores)
    ids = await _say(stores, tenant, thread, "hello")
    await views.get(tenant, thread, "res")
    await _say(stores, tenant, thread, "hello", ids=ids)  # same message id: stored once
    again = await _say(stores, tenant, thread, "again")
    view = await views.get(tenant, thread, "res")
    assert view is not None and _texts(view) == ["hello", "again"]
    assert view.ids == {ids[0], again[0]}


async def test_activation_reloads_and_covered_messages_leave(stores: Stores) -> None:
    tenant, thread = new_id("t"), "th"
    views = ThreadViews(stores)
    ids = await _say(stores, tenant, thread, "old", "new")
    await views.get(tenant, thread, "res")
    # What the observer's activation does: cover messages, bump the observations version.
    await stores.db.pool.execute("UPDATE messages SET covered = true WHERE tenant = $1 AND id = $2", tenant, ids[0])
    await stores.db.pool.execute(
        "UPDATE threads SET observations_version = observations_version + 1 WHERE tenant = $1 AND thread_id = $2",
        tenant, thread)
    view = await views.get(tenant, thread, "res")
    assert view is not None and _texts(view) == ["new"] and views.loads == 2


async def test_a_recreated_thread_gets_a_fresh_view(stores: Stores) -> None:
    tenant, thread = new_id("t"), "th"
    views = ThreadViews(stores)
    await _say(stores, tenant, thread, "before delete")
    assert await views.get(tenant, thread, "res") is not None
    assert await stores.threads.delete(tenant, thread)
    assert await views.get(tenant, thread, "res") is None
    await stores.db.pool.execute("DELETE FROM thread_tombstones WHERE tenant = $1", tenant)
    await _say(stores, tenant, thread, "after", at=time.time())
    view = await views.get(tenant, thread, "res")
    assert view is not None and _texts(view) == ["after"]


async def test_related_tells_whether_other_threads_of_the_resource_have_observations(stores: Stores) -> None:
    tenant = new_id("t")
    views = ThreadViews(stores)
    await _say(stores, tenant, "b", "hi")
    view = await views.get(tenant, "b", "res")
    assert view is not None and not view.related
    for other in ("a", "c"):  # one sorts before "b", one after: both probes must see it
        sub = new_id("t")
        await _say(stores, sub, "b", "hi")
        await _say(stores, sub, other, "the other conversation")
        await stores.db.pool.execute(
            "INSERT INTO observations (id, tenant, resource_id, thread_id, exchange_id, text, priority, observed_on, "
            "tokens, source_message_ids) VALUES ($1, $2, 'res', $3, 'exc', 'x', 'medium', current_date, 1, '{}')",
            new_id("obs"), sub, other)
        sub_views = ThreadViews(stores)
        sub_view = await sub_views.get(sub, "b", "res")
        assert sub_view is not None and sub_view.related, other
    view = await views.get(tenant, "b", "res")
    assert view is not None and not view.related  # other tenants' observations do not count


async def test_a_store_waiting_for_its_thread_takes_no_seq_yet(stores: Stores) -> None:
    # A thread's seqs must be handed out in commit order: a view reads the deltas after the
    # newest seq it saw, so a message committed late under a lower seq would never reach it.
    tenant, thread = new_id("t"), "th"
    await _say(stores, tenant, thread, "first")
    views = ThreadViews(stores)
    await views.get(tenant, thread, "res")
    async with stores.db.pool.acquire() as other_writer, other_writer.transaction():
        await other_writer.execute("SELECT 1 FROM threads WHERE tenant = $1 AND thread_id = $2 FOR NO KEY UPDATE",
                                   tenant, thread)
        before = await stores.db.pool.fetchval("SELECT last_value FROM messages_seq_seq")
        waiting = asyncio.create_task(_say(stores, tenant, thread, "second"))
        await backend_waiting_for_a_lock(stores.db.pool)
        assert not waiting.done()
        assert await stores.db.pool.fetchval("SELECT last_value FROM messages_seq_seq") == before
    await waiting
    view = await views.get(tenant, thread, "res")
    assert view is not None and _texts(view) == ["first", "second"]


async def test_a_store_racing_another_to_create_the_thread_keeps_its_messages(stores: Stores) -> None:
    # Two first stores into a new thread: the second's snapshot lacks the thread the first
    # is creating, so only its insert (waiting on the first's) can find and lock it.
    tenant, thread = new_id("t"), "th"
    async with stores.db.pool.acquire() as first, first.transaction():
        await first.execute("INSERT INTO threads (tenant, thread_id, resource_id, messages_version) "
                            "VALUES ($1, $2, 'res', 1)", tenant, thread)
        second = asyncio.create_task(_say(stores, tenant, thread, "said while the thread was being created"))
        await backend_waiting_for_a_lock(stores.db.pool)  # its insert waits for the first's to commit
        assert not second.done()
    await second
    assert [m.content for m in await stores.threads.messages(tenant, thread)] == [
        "said while the thread was being created"]
    versions = await stores.threads.versions(tenant, thread, "res")
    assert versions is not None and versions.messages_version == 2  # created at 1, bumped by the message


async def test_a_non_durable_store_leaves_the_pooled_connection_as_it_was(stores: Stores) -> None:
    # The edge's copy commits without waiting for the WAL flush (set_config, local to its
    # statement's transaction); the next user of that pooled connection must commit durably.
    tenant = new_id("t")
    for n in range(5):
        await stores.threads.add_messages(tenant, "th", "res", new_id("exc"),
                                          [MessageRecord(new_id("msg"), "user", f"turn {n}", time.time())],
                                          durable=False)
        assert await stores.db.pool.fetchval("SHOW synchronous_commit") == "on"
    assert len(await stores.threads.messages(tenant, "th")) == 5


async def test_a_batch_stores_each_exchange_once_in_its_order(stores: Stores) -> None:
    tenant = new_id("t")
    at = time.time()

    def exchange(thread: str, text: str, n: int) -> NewMessages:
        return NewMessages(tenant, thread, "res", new_id("exc"), [MessageRecord(new_id("msg"), "user", text, at + n)])

    batch = [exchange("b", "b one", 0), exchange("a", "a one", 1), exchange("b", "b two", 2),
             NewMessages(tenant, "a", "res", new_id("exc"), []), exchange("a", "a two", 3)]
    assert await stores.threads.add_many(batch, durable=False) == [1, 1, 1, 0, 1]
    # Idempotent by id, and each count is its own exchange's (the batch is sorted by thread).
    again = [exchange("b", "b three", 4), batch[1], exchange("b", "b four", 5)]
    assert await stores.threads.add_many(again) == [1, 0, 1]
    assert await stores.db.pool.fetchval("SHOW synchronous_commit") == "on"
    for thread, texts in (("a", ["a one", "a two"]), ("b", ["b one", "b two", "b three", "b four"])):
        stored = await stores.threads.messages(tenant, thread)
        assert [m.content for m in stored] == texts
        assert [m.seq for m in stored] == sorted(m.seq for m in stored)  # seqs follow the batch's order


async def test_lookups_queued_behind_a_refresh_share_the_next_one(stores: Stores) -> None:
    tenant, thread = new_id("t"), "th"
    await _say(stores, tenant, thread, "one")
    views = ThreadViews(stores)
    await views.get(tenant, thread, "res")
    await _say(stores, tenant, thread, "two")
    # Ten lookups at once: the first refreshes; the second arrived before that refresh began,
    # so it refreshes again; the eight others arrived before the second began and share it.
    results = await asyncio.gather(*(views.get(tenant, thread, "res") for _ in range(10)))
    assert all(v is not None and _texts(v) == ["one", "two"] for v in results)
    assert (views.appends + views.hits, views.reused) == (2, 8)
    # A lookup arriving after a commit never takes an older refresh.
    await _say(stores, tenant, thread, "three")
    view = await views.get(tenant, thread, "res")
    assert view is not None and _texts(view) == ["one", "two", "three"]


async def test_a_sole_writer_trusts_a_fresh_view_until_told_otherwise(stores: Stores) -> None:
    from memgate_context.pending import PendingMessages

    tenant, thread = new_id("t"), "th"
    await _say(stores, tenant, thread, "one")
    views = ThreadViews(stores, trust_seconds=60)
    pending = PendingMessages(views)
    await views.get(tenant, thread, "res")
    await _say(stores, tenant, thread, "two")  # a write no one told the views of (a sole writer tells)
    view = await views.get(tenant, thread, "res")
    assert view is not None and _texts(view) == ["one"] and views.reused == 1  # trusted: no query
    views.invalidate(tenant, thread)  # what the observer in the process does after a batch
    view = await views.get(tenant, thread, "res")
    assert view is not None and _texts(view) == ["one", "two"]

    # The edge's own exchange: handed over when stored, it is in the view with no query...
    record = MessageRecord(new_id("msg"), "user", "three", time.time())
    pending.add(tenant, thread, "exc_3", [record])
    await stores.threads.add_messages(tenant, thread, "res", "exc_3", [record])
    await pending.stored(tenant, thread, "exc_3", inserted=True)
    assert pending.lines(tenant, thread) == []
    queries = views.appends + views.hits + views.loads
    view = await views.get(tenant, thread, "res")
    assert view is not None and _texts(view) == ["one", "two", "three"]
    assert views.appends + views.hits + views.loads == queries
    views.invalidate(tenant, thread)  # ... and a real refresh does not add it twice
    view = await views.get(tenant, thread, "res")
    assert view is not None and _texts(view) == ["one", "two", "three"]

    # A delete: forgotten at once, whatever the trust.
    await stores.threads.delete(tenant, thread)
    pending.forget(tenant, [thread])
    assert await views.get(tenant, thread, "res") is None
