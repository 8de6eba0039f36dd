"""The request log on Postgres: rows and their kept memory blocks, read per tenant, pruned
after their days, and forgotten with the thread or message they held something of."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from memgate_store import Stores
from memgate_store.request_log import LogFilter
from memgate_store.usage import InjectedMemory, RecalledItem, UsageRecord


def _request(tenant: str, thread: str, recalled: list[RecalledItem], *, days_ago: int = 0,
             status: int = 200) -> UsageRecord:
    return UsageRecord(tenant=tenant, key_id=None, model="fake/x", provider="fake", status=status, stream=False,
                       memory=True, request_id=f"req_{uuid.uuid4().hex}", thread_id=thread, resource_id="r",
                       memory_tokens=12, injected=InjectedMemory("<memgate_memory>…</memgate_memory>", 2, 3, recalled),
                       at=datetime.now(UTC) - timedelta(days=days_ago))


async def test_blocks_are_read_per_tenant_pruned_and_forgotten_with_their_threads(stores: Stores) -> None:
    tenant = f"log-{uuid.uuid4().hex[:6]}"
    own = _request(tenant, "t-new", [])
    recalled = _request(tenant, "t-new", [RecalledItem("observation", "o1", "t-old", 0.5)], status=429)
    old = _request(tenant, "t-new", [], days_ago=40)
    assert await stores.usage.insert_many([own, recalled, old]) == []
    log = stores.request_log

    assert [e.request_id for e in await log.page(tenant, LogFilter())] == [recalled.request_id, own.request_id, old.request_id]
    assert [e.request_id for e in await log.page(tenant, LogFilter(status="error"))] == [recalled.request_id]
    assert [e.request_id for e in await log.page(tenant, LogFilter(since=datetime.now(UTC) - timedelta(days=1)))] \
        == [recalled.request_id, own.request_id]
    assert await log.entry("someone-else", own.request_id) is None  # (another tenant's)
    found = await log.entry(tenant, recalled.request_id)
    assert found is not None and found[1] is not None
    assert (found[1].thread_observations, found[1].recent_messages, found[1].recalled[0].score) == (2, 3, 0.5)

    assert await stores.usage.prune_blocks(30) >= 1
    entry = await log.entry(tenant, old.request_id)
    assert entry is not None and entry[1] is None  # the row stays; its block is gone

    await stores.threads.create(tenant, "t-old", "r", title=None, metadata={})
    assert await stores.threads.delete(tenant, "t-old")
    gone, kept = await log.entry(tenant, recalled.request_id), await log.entry(tenant, own.request_id)
    assert gone is not None and gone[1] is None  # it held something of t-old
    assert kept is not None and kept[1] is not None


async def test_a_block_that_waited_past_its_threads_deletion_is_not_kept(stores: Stores) -> None:
    tenant = f"log-{uuid.uuid4().hex[:6]}"
    waited = _request(tenant, "t-mine", [RecalledItem("message", "m9", "t-gone", 0.3)])  # (made before the delete)
    await stores.threads.create(tenant, "t-gone", "r", title=None, metadata={})
    assert await stores.threads.delete(tenant, "t-gone")
    assert await stores.usage.insert_many([waited]) == []
    entry = await stores.request_log.entry(tenant, waited.request_id)
    assert entry is not None and entry[1] is None  # its row is written, its block forgotten


async def test_a_batch_retried_after_it_was_written_is_not_written_twice(stores: Stores) -> None:
    tenant = f"log-{uuid.uuid4().hex[:6]}"
    batch = [_request(tenant, "t-1", []), _request(tenant, "t-1", [])]
    assert await stores.usage.insert_many(batch) == []
    assert await stores.usage.insert_many(batch) == []  # (as after a commit whose answer was lost)
    assert len(await stores.request_log.page(tenant, LogFilter(since=datetime.now(UTC) - timedelta(days=1)))) == 2
