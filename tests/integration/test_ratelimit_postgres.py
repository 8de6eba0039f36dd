"""Rate limits, keys and usage on a real PostgreSQL: two edge replicas share one limit."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from memgate_edge.auth import Principal
from memgate_edge.ratelimit import RateLimiter
from memgate_edge.usage import UsageRecord, UsageRecorder
from memgate_store import Stores


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
async def replicas(shared_postgres_url: str) -> AsyncIterator[tuple[Stores, Stores]]:
    """Two pools on one database: what two edge replicas have."""
    a, b = await Stores.connect(shared_postgres_url, max_size=8), await Stores.connect(shared_postgres_url, max_size=8)
    yield a, b
    await a.close()
    await b.close()


def _principal(rpm: int, burst: int | None = None) -> Principal:
    return Principal(tenant="t", key_id=f"key_{uuid.uuid4().hex[:12]}", rpm_limit=rpm, burst=burst)


async def test_limit_holds_across_two_replicas(replicas: tuple[Stores, Stores]) -> None:
    clock = Clock()
    a, b = (RateLimiter(s.ratelimits, clock=clock) for s in replicas)
    key = _principal(rpm=60, burst=5)
    decisions = [await (a if n % 2 else b).check(key) for n in range(8)]
    assert [d.allowed for d in decisions] == [True] * 5 + [False] * 3
    assert [d.remaining for d in decisions[:5]] == [4, 3, 2, 1, 0]
    assert decisions[-1].headers()["Retry-After"] == "1"
    clock.now += 1.0  # one interval later: exactly one more, whichever replica asks
    assert (await a.check(key)).allowed
    assert not (await b.check(key)).allowed


async def test_concurrent_requests_on_two_replicas_on_the_database_clock(replicas: tuple[Stores, Stores]) -> None:
    a, b = (RateLimiter(s.ratelimits) for s in replicas)  # no injected clock: the database's
    key = _principal(rpm=1, burst=10)
    decisions = await asyncio.gather(*((a if n % 2 else b).check(key) for n in range(40)))
    allowed = [d for d in decisions if d.allowed]
    assert len(allowed) == 10
    assert sorted(d.remaining for d in allowed) == list(range(10))
    denied = [d for d in decisions if not d.allowed]
    assert all(50 < d.retry_after_seconds <= 60 and d.headers()["Retry-After"] for d in denied)


async def test_a_request_that_read_an_earlier_clock_is_judged_at_the_buckets_time(
        replicas: tuple[Stores, Stores]) -> None:
    # What happens when a statement reads the database clock, then queues behind a later
    # request for the bucket's row lock: it arrives with a time the bucket has passed.
    ahead, behind = Clock(), Clock()
    behind.now -= 0.001
    a, b = RateLimiter(replicas[0].ratelimits, clock=ahead), RateLimiter(replicas[1].ratelimits, clock=behind)
    key = _principal(rpm=1, burst=10)
    first, second = await a.check(key), await b.check(key)
    assert (first.remaining, second.remaining) == (9, 8)
    assert second.reset_seconds == pytest.approx(2 * 60)


async def test_keys_carry_scope_and_limits(replicas: tuple[Stores, Stores]) -> None:
    keys = replicas[0].keys
    key, plaintext = await keys.create("acme", "ci", rpm_limit=30, burst=5)
    found = await keys.lookup(plaintext)
    assert found is not None and (found.id, found.tenant, found.is_admin, found.rpm_limit, found.burst) == \
        (key.id, "acme", False, 30, 5)
    with pytest.raises(ValueError):
        await keys.create("acme", burst=5)  # a burst needs an rpm
    # Keys set by env: the env says whether the key is an admin key; limits are kept.
    configured = "msk_" + uuid.uuid4().hex
    assert (await keys.insert(configured, "default", is_admin=True)).is_admin
    assert not (await keys.insert(configured, "default")).is_admin
    assert await keys.revoke(key.id)
    assert await keys.lookup(plaintext) is None
    assert (await keys.get(key.id)).revoked_at is not None  # type: ignore[union-attr]


async def test_recorded_usage_appears_in_the_report(replicas: tuple[Stores, Stores]) -> None:
    stores = replicas[0]
    tenant_a, tenant_b = f"ua-{uuid.uuid4().hex[:6]}", f"ub-{uuid.uuid4().hex[:6]}"
    key_a, _ = await stores.keys.create(tenant_a, "app")
    key_b, _ = await stores.keys.create(tenant_b)
    started = datetime.now(UTC) - timedelta(seconds=1)
    recorder = UsageRecorder(stores.usage, block_days=30, flush_interval=0.05)
    await recorder.start()

    def record(key_id: str, tenant: str, model: str, status: int = 200, tokens: tuple[int, int] = (10, 5),
               latency: float = 100.0) -> None:
        recorder.record(UsageRecord(tenant=tenant, key_id=key_id, model=model, provider=model.split("/")[0],
                                    status=status, stream=model.endswith("stream"), memory=status == 200,
                                    input_tokens=tokens[0], output_tokens=tokens[1], latency_ms=latency))

    record(key_a.id, tenant_a, "openai/gpt-4o-mini")
    record(key_a.id, tenant_a, "openai/gpt-4o-mini", tokens=(30, 15), latency=300.0)
    record(key_a.id, tenant_a, "google/gemini-stream", status=502, tokens=(0, 0))
    record(key_b.id, tenant_b, "openai/gpt-4o-mini", tokens=(1, 1))
    # Written by the background task, before stop(): poll until its batch has committed.
    for _ in range(200):
        report = await stores.usage.report(started, tenant=tenant_a)
        if report.totals.requests == 3:
            break
        await asyncio.sleep(0.05)
    await recorder.stop()

    assert report.tenant == tenant_a
    t = report.totals
    assert (t.requests, t.errors, t.input_tokens, t.output_tokens, t.streamed, t.with_memory) == (3, 1, 40, 20, 1, 2)
    assert t.avg_latency_ms == pytest.approx(500 / 3, abs=0.01)
    assert {(r.model, r.requests, r.input_tokens) for r in report.by_model} == \
        {("openai/gpt-4o-mini", 2, 40), ("google/gemini-stream", 1, 0)}
    assert {(r.provider, r.requests, r.errors) for r in report.by_provider} == {("openai", 2, 0), ("google", 1, 1)}
    assert [(r.key_id, r.tenant, r.key_prefix, r.key_name, r.requests) for r in report.by_key] == \
        [(key_a.id, tenant_a, key_a.prefix, "app", 3)]

    everyone = await stores.usage.report(started)
    assert {r.key_id for r in everyone.by_key} >= {key_a.id, key_b.id}
    later = await stores.usage.report(datetime.now(UTC) + timedelta(seconds=1), tenant=tenant_a)
    assert later.totals.requests == 0 and later.by_model == []


async def test_a_row_postgres_refuses_is_set_aside_and_the_rest_are_written(replicas: tuple[Stores, Stores]) -> None:
    stores = replicas[0]
    tenant = f"up-{uuid.uuid4().hex[:6]}"
    key, _ = await stores.keys.create(tenant)
    started = datetime.now(UTC) - timedelta(seconds=1)

    def row(model: str) -> UsageRecord:
        return UsageRecord(tenant=tenant, key_id=key.id, model=model, provider="fake", status=200, stream=False,
                           memory=False, input_tokens=1, output_tokens=1, latency_ms=1.0)

    poisoned = row("fake/a\x00b")  # Postgres text cannot hold NUL
    too_many = msgspec.structs.replace(row("fake/big"), input_tokens=2**70)  # no column holds it
    refused = await stores.usage.insert_many([row("fake/one"), poisoned, row("fake/two"), too_many])
    assert refused == [poisoned, too_many]
    assert (await stores.usage.report(started, tenant=tenant)).totals.requests == 2
    assert await stores.usage.insert_many([row("fake/three")]) == []
