"""The rate limiter around its store: unlimited keys never reach it, and a store that fails lets
requests through. (Its behaviour on the real store: tests/integration/test_ratelimit_gcra.py.)"""

from __future__ import annotations

import msgspec
import pytest

from memgate_core.errors import RateLimited
from memgate_edge.access import limit_scope
from memgate_edge.auth import Principal
from memgate_edge.ratelimit import UNLIMITED, RateLimiter, decide


class FailingStore:
    calls = 0

    async def take(self, bucket: str, **kw: object) -> tuple[int, int, int]:
        self.calls += 1
        raise ConnectionError("database down")


def _key(rpm: int | None = None, burst: int | None = None, key_id: str = "key_a") -> Principal:
    return Principal(tenant="t", key_id=key_id, rpm_limit=rpm, burst=burst)


async def test_unlimited_keys_cost_nothing() -> None:
    store = FailingStore()
    limiter = RateLimiter(store)
    for principal in (_key(), _key(rpm=0), Principal(tenant="t")):
        decision = await limiter.check(principal)
        assert decision is UNLIMITED
        assert decision.headers() == {}
        assert decision.raise_if_denied() is decision
    assert store.calls == 0


async def test_store_failure_fails_open() -> None:
    store = FailingStore()
    limiter = RateLimiter(store)
    decision = await limiter.check(_key(rpm=1))
    assert decision.allowed and decision.headers() == {}
    assert store.calls == 1


class RecordingStore:
    """Allows everything; keeps which buckets were asked for, with their interval."""

    def __init__(self) -> None:
        self.taken: list[tuple[str, int]] = []

    async def take(self, bucket: str, *, interval_us: int, tolerance_us: int, now_us: int | None = None,
                   cells: int = 1) -> tuple[int, int, int]:
        self.taken.append((bucket, interval_us))
        return 1, 1_000_000 + interval_us, 1_000_000


async def test_each_scope_has_its_own_default_its_own_override_and_its_own_bucket() -> None:
    limiter = RateLimiter(RecordingStore(), default_rpm=600, memory_read_rpm=1200, memory_write_rpm=60)
    plain = Principal(tenant="t", key_id="k1")
    assert [limiter.limits_of(plain, s) for s in ("chat", "memory_read", "memory_write")] == [
        (600, 600), (1200, 1200), (60, 60)]
    own = Principal(tenant="t", key_id="k2", rpm_limit=10, burst=3, memory_read_rpm=0, memory_write_rpm=5)
    assert [limiter.limits_of(own, s) for s in ("chat", "memory_read", "memory_write")] == [(10, 3), None, (5, 5)]

    store = limiter.store
    assert isinstance(store, RecordingStore)
    for scope in ("chat", "memory_read", "memory_write"):
        decision = await limiter.check(plain, scope)
        assert decision.headers()["X-RateLimit-Scope"] == scope
    assert [bucket for bucket, _ in store.taken] == ["key:k1", "key:k1:memory_read", "key:k1:memory_write"]
    assert (await limiter.check(own, "memory_read")) is UNLIMITED and len(store.taken) == 3


async def test_limits_can_be_turned_off() -> None:
    store = RecordingStore()
    limiter = RateLimiter(store, default_rpm=600, memory_read_rpm=600, memory_write_rpm=600, enabled=False)
    for scope in ("chat", "memory_read", "memory_write"):
        assert await limiter.check(Principal(tenant="t", key_id="k", rpm_limit=5), scope) is UNLIMITED
    assert store.taken == []


def test_a_denial_says_its_scope_and_how_long_to_wait() -> None:
    denied = decide(False, 5_000_000, 1_000_000, rpm=60, burst=1, scope="memory_write")
    with pytest.raises(RateLimited) as raised:
        denied.raise_if_denied()
    body = msgspec.json.decode(raised.value.to_json())["error"]
    assert (body["scope"], body["retry_after_seconds"], body["code"]) == ("memory_write", 4, "rate_limit_exceeded")
    assert "memory_write" in body["message"] and raised.value.headers["Retry-After"] == "4"


@pytest.mark.parametrize(("method", "path", "scope"), [
    ("POST", "/v1/chat/completions", "chat"), ("POST", "/v1/responses", "chat"), ("POST", "/v1/messages", "chat"),
    ("GET", "/v1/models", "chat"), ("GET", "/v1/memory/threads", "memory_read"),
    ("HEAD", "/v1/memory/threads/t", "memory_read"), ("POST", "/v1/memory/search", "memory_write"),
    ("DELETE", "/v1/memory/threads/t", "memory_write"), ("PATCH", "/v1/memory/threads/t", "memory_write"),
    ("GET", "/v1/admin/keys", "memory_read"), ("POST", "/v1/admin/keys", "memory_write"),
])
def test_a_request_counts_against_its_routes_scope(method: str, path: str, scope: str) -> None:
    assert limit_scope(method, path) == scope
