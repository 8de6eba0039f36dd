"""The rate limiter's math (GCRA), with an injected clock: bursts, refill, headers, 429."""

from __future__ import annotations

import pytest

from memgate_core.errors import RateLimited
from memgate_edge.auth import Principal
from memgate_edge.ratelimit import UNLIMITED, MemoryBuckets, RateLimiter, gcra, interval_us


class Clock:
    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FailingStore:
    calls = 0

    async def take(self, bucket: str, **kw: object) -> tuple[bool, int, int]:
        self.calls += 1
        raise ConnectionError("database down")


def _key(rpm: int | None = None, burst: int | None = None, key_id: str = "key_a") -> Principal:
    return Principal(tenant="t", key_id=key_id, rpm_limit=rpm, burst=burst)


def _limiter(clock: Clock, **kw: object) -> RateLimiter:
    return RateLimiter(MemoryBuckets(clock), clock=clock, **kw)  # type: ignore[arg-type]


def test_gcra_step() -> None:
    # interval 10, tolerance 20: three requests at once, then one every 10.
    assert gcra(None, 100, 10, 20) == (True, 110)
    assert gcra(110, 100, 10, 20) == (True, 120)
    assert gcra(120, 100, 10, 20) == (True, 130)
    assert gcra(130, 100, 10, 20) == (False, 130)
    assert gcra(130, 110, 10, 20) == (True, 140)
    assert gcra(50, 100, 10, 20) == (True, 110)  # an idle bucket does not bank more than the burst


async def test_burst_then_denied_with_retry_after() -> None:
    clock = Clock()
    limiter = _limiter(clock)
    key = _key(rpm=60, burst=3)  # one per second, three at once
    decisions = [await limiter.check(key) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0]
    denied = decisions[-1]
    assert denied.retry_after_seconds == pytest.approx(1.0)
    assert denied.reset_seconds == pytest.approx(3.0)
    assert denied.headers() == {"X-RateLimit-Limit": "60", "X-RateLimit-Remaining": "0",
                                "X-RateLimit-Reset": "3", "Retry-After": "1"}
    assert decisions[0].headers() == {"X-RateLimit-Limit": "60", "X-RateLimit-Remaining": "2",
                                      "X-RateLimit-Reset": "1"}


async def test_refill_one_per_interval() -> None:
    clock = Clock()
    limiter = _limiter(clock)
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


async def test_denied_requests_do_not_consume() -> None:
    clock = Clock()
    limiter = _limiter(clock)
    key = _key(rpm=6, burst=1)  # one per 10 s
    assert (await limiter.check(key)).allowed
    for _ in range(79):
        clock.advance(0.125)
        assert not (await limiter.check(key)).allowed
    clock.advance(0.125)  # 10 s after the first request
    assert (await limiter.check(key)).allowed


async def test_long_run_rate_is_rpm_plus_burst() -> None:
    clock = Clock()
    limiter = _limiter(clock)
    key = _key(rpm=120, burst=10)
    allowed = 0
    for _ in range(6000):  # 10 minutes, a request every 100 ms (5x the limit)
        allowed += (await limiter.check(key)).allowed
        clock.advance(0.1)
    assert allowed == 10 + 120 * 10 - 1  # the burst, then exactly one per interval


async def test_default_burst_is_the_rpm() -> None:
    clock = Clock()
    limiter = _limiter(clock)
    results = [(await limiter.check(_key(rpm=5))).allowed for _ in range(6)]
    assert results == [True] * 5 + [False]


async def test_keys_are_independent() -> None:
    clock = Clock()
    limiter = _limiter(clock)
    assert (await limiter.check(_key(rpm=1, key_id="a"))).allowed
    assert not (await limiter.check(_key(rpm=1, key_id="a"))).allowed
    assert (await limiter.check(_key(rpm=1, key_id="b"))).allowed


async def test_odd_rates_stay_exact() -> None:
    # 7/min does not divide a minute in whole microseconds; integer math must still allow
    # exactly the burst and refill on time.
    clock = Clock(1_799_999_999.123457)
    limiter = _limiter(clock)
    key = _key(rpm=7, burst=7)
    assert [(await limiter.check(key)).allowed for _ in range(8)] == [True] * 7 + [False]
    clock.advance(interval_us(7) / 1e6)
    assert (await limiter.check(key)).allowed


async def test_unlimited_keys_cost_nothing() -> None:
    store = FailingStore()
    limiter = RateLimiter(store)
    for principal in (_key(), _key(rpm=0), Principal(tenant="t")):
        decision = await limiter.check(principal)
        assert decision is UNLIMITED
        assert decision.headers() == {}
        assert decision.raise_if_denied() is decision
    assert store.calls == 0


async def test_default_rpm_applies_unless_the_key_says_otherwise() -> None:
    clock = Clock()
    limiter = _limiter(clock, default_rpm=2)
    assert [(await limiter.check(_key(key_id="d"))).allowed for _ in range(3)] == [True, True, False]
    assert (await limiter.check(_key(rpm=0, key_id="u"))) is UNLIMITED  # explicitly unlimited
    assert [(await limiter.check(_key(rpm=10, burst=4, key_id="o"))).allowed for _ in range(5)] == [True] * 4 + [False]


async def test_enforce_raises_429_with_headers() -> None:
    clock = Clock()
    limiter = _limiter(clock)
    key = _key(rpm=30, burst=1)
    assert (await limiter.enforce(key)).allowed
    with pytest.raises(RateLimited) as caught:
        await limiter.enforce(key)
    error = caught.value
    assert error.status == 429 and error.type == "rate_limit_error"
    assert error.headers["Retry-After"] == "2"
    assert error.headers["X-RateLimit-Remaining"] == "0"
    assert "30 requests per minute" in error.message


async def test_store_failure_fails_open() -> None:
    store = FailingStore()
    limiter = RateLimiter(store)
    decision = await limiter.check(_key(rpm=1))
    assert decision.allowed and decision.headers() == {}
    assert store.calls == 1
