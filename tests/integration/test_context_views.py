"""The context service's cached thread views against real Postgres: deltas, order, reloads."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from helpers import backend_waiting_for_a_lock

from memgate_context.view import RECENT_MESSAGE_LIMIT, ThreadViews
from memgate_core.events import ExchangeCompleted, MessageRecord
from memgate_core.ids import new_id
from memgate_store import Stores
from memgate_store import threads as threads_module


async def _say(stores: Stores, tenant: str, thread: str, *texts: str, at: float | None = None,
               ids: list[str] | None = None) -> list[str]:
    when = time.time() - 1000 if at is None else at
    ids = ids or [new_id("msg") for _ in texts]
    records = [MessageRecord(i, "user", text, when + n * 0.001) for n, (i, text) in enumerate(zip(ids, texts))]
    await stores.threads.record(exchange(tenant, thread, records))
    return ids


def exchange(tenant: str, thread: str, records: list[MessageRecord]) -> ExchangeCompleted:
    return ExchangeCompleted(new_id("exc"), tenant, "res", thread, "fake/m", "fake", records,
                             records[0].created_at if records else 0.0, time.time())


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


async def test_a_store_that_commits_late_still_reaches_the_view(stores: Stores) -> None:
    # Stores into one thread do not wait for each other, so they commit in any order: one that
    # began first and commits last must not be skipped by a view that read in between.
    tenant, thread = new_id("t"), "th"
    await _say(stores, tenant, thread, "first")
    views = ThreadViews(stores)
    await views.get(tenant, thread, "res")
    async with stores.db.pool.acquire() as slow, slow.transaction():
        await slow.execute(
            "INSERT INTO messages (id, tenant, thread_id, exchange_id, role, content, tokens, created_at) "
            "VALUES ($1, $2, $3, 'exc_slow', 'user', 'slow', 1, now())", new_id("msg"), tenant, thread)
        await asyncio.wait_for(_say(stores, tenant, thread, "fast"), 5)  # not held up by the open store
        view = await views.get(tenant, thread, "res")
        assert view is not None and _texts(view) == ["first", "fast"]
    view = await views.get(tenant, thread, "res")
    assert view is not None and _texts(view) == ["first", "fast", "slow"]
    view = await views.get(tenant, thread, "res")  # read again: nothing twice
    assert view is not None and _texts(view) == ["first", "fast", "slow"]


async def test_a_store_racing_another_to_create_the_thread_keeps_its_messages(stores: Stores) -> None:
    # Two first stores into a new thread: the second's snapshot lacks the thread the first
    # is creating, so only its insert (waiting on the first's) can find and lock it.
    tenant, thread = new_id("t"), "th"
    async with stores.db.pool.acquire() as first, first.transaction():
        await first.execute("INSERT INTO threads (tenant, thread_id, resource_id) VALUES ($1, $2, 'res')",
                            tenant, thread)
        second = asyncio.create_task(_say(stores, tenant, thread, "said while the thread was being created"))
        await backend_waiting_for_a_lock(stores.db.pool)  # its insert waits for the first's to commit
        assert not second.done()
    await second
    assert [m.content for m in await stores.threads.messages(tenant, thread)] == [
        "said while the thread was being created"]


async def test_an_import_records_its_exchanges_in_order_in_one_transaction(stores: Stores) -> None:
    tenant = new_id("t")
    at = time.time()

    def one(text: str, n: int) -> ExchangeCompleted:
        return exchange(tenant, "a", [MessageRecord(new_id("msg"), "user", text, at + n)])

    batch = [one("one", 0), one("two", 1), exchange(tenant, "a", []), one("three", 2)]
    assert await stores.threads.record_many(batch) == [1, 1, 0, 1]
    assert await stores.threads.record_many([one("four", 3), batch[1]]) == [1, 0]  # idempotent by id
    stored = await stores.threads.messages(tenant, "a")
    assert [m.content for m in stored] == ["one", "two", "three", "four"]
    assert [m.seq for m in stored] == sorted(m.seq for m in stored)  # seqs follow the batch's order
    outboxed = await stores.db.pool.fetchval("SELECT count(*) FROM outbox WHERE exchange_id = ANY($1::text[])",
                                             [e.exchange_id for e in batch])
    assert outboxed == 3  # one row per exchange that stored something


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


async def test_a_refresh_reads_only_what_is_new_however_long_the_thread(stores: Stores) -> None:
    # The refresh behind every lookup of a cached thread must not read the thread's history:
    # its index scan is bounded by the oldest transaction the view has not seen.
    tenant, thread = new_id("t"), "th"
    at = time.time() - 1000
    history = [exchange(tenant, thread, [MessageRecord(new_id("msg"), "user", f"old {n}", at + n)]) for n in range(600)]
    await stores.threads.record_many(history)
    views = ThreadViews(stores)
    view = await views.get(tenant, thread, "res")
    assert view is not None
    async with stores.db.pool.acquire() as slow, slow.transaction():  # a store still running: unseen
        await slow.execute(
            "INSERT INTO messages (id, tenant, thread_id, exchange_id, role, content, tokens, created_at) "
            "VALUES ($1, $2, $3, 'exc_slow', 'user', 'slow', 1, now())", new_id("msg"), tenant, thread)
        await _say(stores, tenant, thread, "new", at=at + 700)
        view = await views.get(tenant, thread, "res")
        assert view is not None and view.unseen.xip
    await _say(stores, tenant, thread, "newer", at=at + 800)
    async with stores.db.pool.acquire() as connection:
        await connection.execute("SET enable_seqscan = off")  # (a small table could be scanned whole)
        plan = await connection.fetchval(
            "EXPLAIN (ANALYZE, FORMAT JSON) " + threads_module._CHANGES,
            *threads_module._changes_arguments(tenant, thread, "res", view.unseen))
    scans = [node for node in _plan_nodes(json.loads(plan)[0]["Plan"]) if node.get("Relation Name") == "messages"]
    assert scans and all(node["Node Type"] == "Index Scan" for node in scans)
    read = sum(node["Actual Rows"] + node.get("Rows Removed by Filter", 0) for node in scans)
    assert 2 <= read < 20  # "slow" and "newer", not the 600 before them


def _plan_nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    return [node, *(n for child in node.get("Plans", []) for n in _plan_nodes(child))]


async def test_a_view_keeps_its_token_totals_as_messages_come_and_go(stores: Stores) -> None:
    # Every lookup of a long thread reads these totals instead of summing its lines.
    tenant, thread = new_id("t"), "th"
    start = time.time() - 10_000
    await _say(stores, tenant, thread, *(f"message {n} " * (n % 7 + 1) for n in range(RECENT_MESSAGE_LIMIT - 5)), at=start)
    views = ThreadViews(stores)
    for n in range(3):  # past the view's limit: the oldest leave, late ones sort in
        await _say(stores, tenant, thread, *(f"more {n} {k}" for k in range(4)), at=start + 1000 - n * 500)
        view = await views.get(tenant, thread, "res")
        assert view is not None and len(view.messages) == min(RECENT_MESSAGE_LIMIT, RECENT_MESSAGE_LIMIT - 5 + 4 * (n + 1))
        assert view.message_tokens == sum(m.line.tokens for m in view.messages) > 0
        assert view.observation_tokens == sum(o.line.tokens for o in view.observations)
