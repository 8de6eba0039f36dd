"""Per-key rate limits (requests per minute + burst), by scope, shared by every edge replica.

Three scopes, each with its own bucket per key: `chat` (the LLM proxy: chat completions,
responses, messages, models), `memory_read` (GET of the memory and admin APIs) and
`memory_write` (their other methods). A key's own limit of a scope applies, else the
gateway's default for it (MEMGATE_DEFAULT_RPM, MEMGATE_MEMORY_READ_RPM,
MEMGATE_MEMORY_WRITE_RPM; 0: unlimited); MEMGATE_RATE_LIMITS=false turns them all off.

The algorithm is GCRA (the "generic cell rate algorithm", a token bucket that stores one
number per key): a key with `rpm` requests per minute earns one request every
`interval = 60 s / rpm`, and may send up to `burst` requests at once. Its state, the
*theoretical arrival time* (tat), lives in Postgres (`memgate_store.ratelimits`) and is
updated by one atomic statement, so the limit holds however many replicas
serve the key (a busy key leases several requests per statement: see below). Times are
integer microseconds: the comparisons are exact.

    decision = await deps.limiter.check(principal, "chat")   # no I/O for an unlimited scope
    decision.raise_if_denied()                       # 429 rate_limit_error + Retry-After
    response.headers.update(decision.headers())      # X-RateLimit-Limit / -Remaining / -Reset / -Scope

A busy key does not cost a statement per request: an edge leases up to `lease_size(burst)`
requests at once from the bucket (one for bursts under 100, so small limits are exact) and
spends them for up to LEASE_SECONDS without asking again; the headers count what the lease
still holds as remaining. Across replicas the limit then errs by at most a lease per
replica, on the safe side (leased requests not spent within LEASE_SECONDS are lost).

If the store cannot answer within `timeout`, the request is let through (fail open) and
a warning is logged: the rate limiter never takes the gateway down with it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from typing import Literal, Protocol

import msgspec
from prometheus_client import Counter

from memgate_core.errors import RateLimited
from memgate_edge.auth import Principal

log = logging.getLogger("memgate.edge.ratelimit")

LimitScope = Literal["chat", "memory_read", "memory_write"]
MICROS = 1_000_000
MAX_LEASE = 64  # requests an edge takes from a bucket at once, at most
LEASE_SECONDS = 1.0  # a lease's requests not spent by then go unused
_KEEP = 10_000  # buckets whose lease and lock an edge keeps between prunes
RATE_LIMIT_DECISIONS = Counter("memgate_ratelimit_decisions_total", "Rate limit checks of limited keys",
                               ["outcome"])  # allowed | denied | error (failed open)


class RateDecision(msgspec.Struct, frozen=True):
    allowed: bool
    limit: int | None  # requests per minute; None: the key is not limited in this scope
    remaining: int | None  # requests that could be sent right now
    reset_seconds: float  # until the bucket is full again (remaining == burst)
    retry_after_seconds: float  # until the next request is allowed (0 when allowed)
    scope: LimitScope = "chat"

    def headers(self) -> dict[str, str]:
        if self.limit is None:
            return {}
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining or 0),
            "X-RateLimit-Reset": str(math.ceil(self.reset_seconds)),
            "X-RateLimit-Scope": self.scope,
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.wait_seconds)
        return headers

    @property
    def wait_seconds(self) -> int:
        return max(1, math.ceil(self.retry_after_seconds))

    def raise_if_denied(self) -> RateDecision:
        if not self.allowed:
            raise RateLimited(
                f"Rate limit reached for this API key in scope '{self.scope}' ({self.limit} requests per "
                f"minute). Retry after {self.wait_seconds} s.",
                headers=self.headers(), scope=self.scope, retry_after_seconds=self.wait_seconds,
            )
        return self


UNLIMITED = RateDecision(allowed=True, limit=None, remaining=None, reset_seconds=0.0, retry_after_seconds=0.0)


def decide(allowed: bool, tat_us: int, now_us: int, *, rpm: int, burst: int, scope: LimitScope = "chat") -> RateDecision:
    """The decision a client sees, from the bucket's state after the check."""
    interval, tolerance = interval_us(rpm), tolerance_us(rpm, burst)
    if allowed:
        remaining = min(burst, max(0, (now_us + tolerance - tat_us) // interval + 1))
        retry_after = 0.0
    else:
        remaining = 0
        retry_after = max(0, tat_us - tolerance - now_us) / MICROS
    return RateDecision(allowed=allowed, limit=rpm, remaining=remaining,
                        reset_seconds=max(0, tat_us - now_us) / MICROS, retry_after_seconds=retry_after, scope=scope)


def interval_us(rpm: int) -> int:
    return max(1, round(60 * MICROS / rpm))


def tolerance_us(rpm: int, burst: int) -> int:
    return (burst - 1) * interval_us(rpm)


def lease_size(burst: int) -> int:
    """Requests an edge takes at once from a bucket of `burst`: one (exact) under 100."""
    return max(1, min(MAX_LEASE, burst // 50))


class BucketStore(Protocol):
    """Where buckets live; `memgate_store.ratelimits.RateLimitRepository` is the shared one."""

    async def take(self, bucket: str, *, interval_us: int, tolerance_us: int, now_us: int | None = None,
                   cells: int = 1) -> tuple[int, int, int]:
        """Up to `cells` requests: (how many it got, tat after, now), in µs."""
        ...


class _Lease(msgspec.Struct):
    cells: int  # still to spend
    tat_us: int  # the bucket's, after the lease was taken
    now_us: int
    taken_at: float  # (monotonic)

    def usable(self) -> bool:
        return self.cells > 0 and time.monotonic() - self.taken_at < LEASE_SECONDS


class RateLimiter:
    def __init__(self, store: BucketStore, *, default_rpm: int | None = None, memory_read_rpm: int | None = None,
                 memory_write_rpm: int | None = None, enabled: bool = True,
                 clock: Callable[[], float] | None = None, timeout: float = 0.5) -> None:
        self.store = store
        self.defaults: dict[LimitScope, int | None] = {"chat": default_rpm or None, "memory_read": memory_read_rpm or None,
                                                  "memory_write": memory_write_rpm or None}
        self.enabled = enabled
        self.clock = clock  # None: the store's clock (the database's, shared by every replica)
        self.timeout = timeout
        self._last_warning = 0.0
        self._leases: dict[str, _Lease] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def limits_of(self, principal: Principal, scope: LimitScope = "chat") -> tuple[int, int] | None:
        """(rpm, burst) that apply to this key in `scope`, or None when it is not limited there."""
        if not self.enabled:
            return None
        own = {"chat": principal.rpm_limit, "memory_read": principal.memory_read_rpm,
               "memory_write": principal.memory_write_rpm}[scope]
        burst = principal.burst if scope == "chat" and own is not None else None
        rpm = own if own is not None else self.defaults[scope]
        if not rpm:
            return None
        return rpm, max(1, burst or rpm)

    async def check(self, principal: Principal, scope: LimitScope = "chat") -> RateDecision:
        limits = self.limits_of(principal, scope)
        if limits is None:
            return UNLIMITED
        rpm, burst = limits
        owner = f"key:{principal.key_id}" if principal.key_id else f"tenant:{principal.tenant}"
        bucket = owner if scope == "chat" else f"{owner}:{scope}"
        lease = self._leases.get(bucket)
        if lease is None or not lease.usable():
            if len(self._locks) > _KEEP:
                self._prune()
            async with self._locks.setdefault(bucket, asyncio.Lock()):  # one lease taken at a time
                lease = self._leases.get(bucket)
                if lease is None or not lease.usable():
                    taken = await self._take(bucket, rpm, burst)
                    if taken is None:
                        return UNLIMITED
                    granted, tat, now = taken
                    if not granted:
                        return decide(False, tat, now, rpm=rpm, burst=burst, scope=scope)
                    lease = self._leases[bucket] = _Lease(granted, tat, now, time.monotonic())
        lease.cells -= 1
        decision = decide(True, lease.tat_us, lease.now_us, rpm=rpm, burst=burst, scope=scope)
        return msgspec.structs.replace(decision, remaining=min(burst, (decision.remaining or 0) + lease.cells))

    async def _take(self, bucket: str, rpm: int, burst: int) -> tuple[int, int, int] | None:
        """A lease from the store; None when it cannot answer (the request goes through)."""
        now_us = round(self.clock() * MICROS) if self.clock is not None else None
        try:
            async with asyncio.timeout(self.timeout):
                taken = await self.store.take(bucket, interval_us=interval_us(rpm), tolerance_us=tolerance_us(rpm, burst),
                                              now_us=now_us, cells=lease_size(burst))
        except Exception as exc:
            RATE_LIMIT_DECISIONS.labels("error").inc()
            if time.monotonic() - self._last_warning > 10:
                self._last_warning = time.monotonic()
                log.warning("rate limit store unavailable, letting requests through: %r", exc)
            return None
        RATE_LIMIT_DECISIONS.labels("allowed" if taken[0] else "denied").inc()
        return taken

    def _prune(self) -> None:
        self._locks = {b: lock for b, lock in self._locks.items() if lock.locked()}
        self._leases = {b: lease for b, lease in self._leases.items() if lease.usable()}

    async def enforce(self, principal: Principal, scope: LimitScope = "chat") -> RateDecision:
        """`check`, then 429 (RateLimited, with Retry-After) when denied."""
        return (await self.check(principal, scope)).raise_if_denied()
