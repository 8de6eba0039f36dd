"""The rate limiter around its store: unlimited keys never reach it, and a store that fails lets
requests through. (Its behaviour on the real store: tests/integration/test_ratelimit_gcra.py.)"""

from __future__ import annotations

from memgate_edge.auth import Principal
from memgate_edge.ratelimit import UNLIMITED, RateLimiter


class FailingStore:
    calls = 0

    async def take(self, bucket: str, **kw: object) -> tuple[bool, int, int]:
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
