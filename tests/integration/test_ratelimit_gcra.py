"""The rate limiter's behaviour on its real store (the SQL every replica shares), with an
injected clock: bursts, refill, headers, 429."""

from __future__ import annotations

import os
import uuid
from typing import Any

import pytest

from memgate_core.errors import RateLimited
from memgate_edge.auth import Principal
from memgate_edge.ratelimit import UNLIMITED, RateLimiter, interval_us, lease_size
from memgate_store import Stores


class Clock:
    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


RUN = uuid.uuid4().hex[:8]  # buckets of this run only (the database outlives it)


def _key(rpm: int | None = None, burst: int | None = None, key_id: str = "key_a") -> Principal:
    # A bucket per test and key: every test starts its clock at the same time.
    test = os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0]
    return Principal(tenant="t", key_id=f"{key_id}:{test}:{RUN}", rpm_limit=rpm, burst=burst)


def _limiter(stores: Stores, clock: Clock, **kw: object) -> RateLimiter:
    return RateLimiter(stores.ratelimits, clock=clock, **kw)  # type: ignore[arg-type]


async def test_burst_then_denied_with_retry_after(stores: Stores) -> None:
    clock = Clock()
    limiter = _limiter(stores, clock)
    key = _key(rpm=60, burst=3)  # one per second, three at once
    decisions = [await limiter.check(key) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0]
    denied = decisions[-1]
    assert denied.retry_after_seconds == pytest.approx(1.0)
    assert denied.reset_seconds == pytest.approx(3.0)
    assert denied.headers() == {"X-RateLimit-Limit": "60", "X-RateLimit-Remaining": "0",
                                "X-RateLimit-Reset": "3", "X-RateLimit-Scope": "chat", "Retry-After": "1"}
    assert decisions[0].headers() == {"X-RateLimit-Limit": "60", "X-RateLimit-Remaining": "2",
                                      "X-RateLimit-Reset": "1", "X-RateLimit-Scope": "chat"}


async def test_refill_one_per_interval(stores: Stores) -> None:
    clock = Clock()
    limiter = _limiter(stores, clock)
    key = _key(rpm=60, burst=3)
    for _ in range(3):
        assert (await limiter.check(key)).allowed
    clock.advance(0.999)
    assert not (await limiter.check(key)).allowed
    clock.advance(0.001)
    assert (await limiter.check(key)).allowed
    assert not (await limiter.check(key)).allowed
    clock.advance(10)  # idle long enough: the full burst is back, not more
    assert [(await limiter.check(key)).allowed for _ in range(4)] == [True, True, True, False]


async def test_denied_requests_do_not_consume(stores: Stores) -> None:
    clock = Clock()
    limiter = _limiter(stores, clock)
    key = _key(rpm=6, burst=1)  # one per 10 s
    assert (await limiter.check(key)).allowed
    for _ in range(79):
        clock.advance(0.125)
        assert not (await limiter.check(key)).allowed
    clock.advance(0.125)  # 10 s after the first request
    assert (await limiter.check(key)).allowed


async def test_long_run_rate_is_rpm_plus_burst(stores: Stores) -> None:
    clock = Clock()
    limiter = _limiter(stores, clock)
    key = _key(rpm=120, burst=10)
    allowed = 0
    for _ in range(6000):  # 10 minutes, a request every 100 ms (5x the limit)
        allowed += (await limiter.check(key)).allowed
        clock.advance(0.1)
    assert allowed == 10 + 120 * 10 - 1  # the burst, then exactly one per interval


async def test_default_burst_is_the_rpm(stores: Stores) -> None:
    clock = Clock()
    limiter = _limiter(stores, clock)
    results = [(await limiter.check(_key(rpm=5))).allowed for _ in range(6)]
    assert results == [True] * 5 + [False]


async def test_keys_are_independent(stores: Stores) -> None:
    clock = Clock()
    limiter = _limiter(stores, clock)
    assert (await limiter.check(_key(rpm=1, key_id="a"))).allowed
    assert not (await limiter.check(_key(rpm=1, key_id="a"))).allowed
    assert (await limiter.check(_key(rpm=1, key_id="b"))).allowed


async def test_odd_rates_stay_exact(stores: Stores) -> None:
    # 7/min does not divide a minute in whole microseconds; integer math must still allow
    # exactly the burst and refill on time.
    clock = Clock(1_799_999_999.123457)
    limiter = _limiter(stores, clock)
    key = _key(rpm=7, burst=7)
    assert [(await limiter.check(key)).allowed for _ in range(8)] == [True] * 7 + [False]
    clock.advance(interval_us(7) / 1e6)
    assert (await limiter.check(key)).allowed


async def test_default_rpm_applies_unless_the_key_says_otherwise(stores: Stores) -> None:
    clock = Clock()
    limiter = _limiter(stores, clock, default_rpm=2)
    assert [(await limiter.check(_key(key_id="d"))).allowed for _ in range(3)] == [True, True, False]
    assert (await limiter.check(_key(rpm=0, key_id="u"))) is UNLIMITED  # explicitly unlimited
    assert [(await limiter.check(_key(rpm=10, burst=4, key_id="o"))).allowed for _ in range(5)] == [True] * 4 + [False]


async def test_enforce_raises_429_with_headers(stores: Stores) -> None:
    clock = Clock()
    limiter = _limiter(stores, clock)
    key = _key(rpm=30, burst=1)
    assert (await limiter.enforce(key)).allowed
    with pytest.raises(RateLimited) as caught:
        await limiter.enforce(key)
    error = caught.value
    assert error.status == 429 and error.type == "rate_limit_error"
    assert error.headers["Retry-After"] == "2"
    assert error.headers["X-RateLimit-Remaining"] == "0"
    assert "30 requests per minute" in error.message


async def test_a_busy_key_leases_requests_and_replicas_stay_within_its_burst(stores: Stores) -> None:
    clock = Clock()
    leases: list[int] = []

    class CountedStore:
        """The shared store, counting the statements (and the cells each asks for)."""

        async def take(self, bucket: str, **kw: Any) -> tuple[int, int, int]:
            leases.append(kw["cells"])
            return await stores.ratelimits.take(bucket, **kw)

    replicas = [RateLimiter(CountedStore(), clock=clock) for _ in range(2)]
    key = _key(rpm=6000, burst=1000)
    assert lease_size(1000) == 20
    decisions = [await replicas[i % 2].check(key) for i in range(1100)]
    assert sum(d.allowed for d in decisions) == 1000  # every leased request spent, none beyond the burst
    assert [d.allowed for d in decisions[-100:]] == [False] * 100
    assert set(leases) == {20} and len(leases) == 1000 // 20 + 100  # a statement a lease (and a denial)
    first = [d.remaining for d in decisions[0:40:2]]  # one replica's answers count down
    assert first == sorted(first, reverse=True) and first[0] == 1000 - 1
