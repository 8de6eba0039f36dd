"""A tenant's own memory settings (the dashboard's Settings page): its observation and
reflection thresholds and its memory budgets, each overriding the gateway's default (None:
the default applies).

The observer reads the thresholds with every batch (`ObservationRepository.limits`, where a
thread's own thresholds win); the chat path reads the budgets through `memory_budget`, cached
for a few seconds per process (a change made on another replica applies within
CACHE_SECONDS; on this one, at once).
"""

from __future__ import annotations

import logging
import time

import msgspec

from memgate_store.database import Database

log = logging.getLogger("memgate.store.tenant_settings")

CACHE_SECONDS = 5.0
THRESHOLD_RANGE = (100, 10_000_000)  # as a thread's own (PATCH .../observations/config)
BUDGET_RANGE = (1, 100_000)  # as a request's own (x-memory-budget-tokens)


class TenantSettings(msgspec.Struct, frozen=True):
    activation_tokens: int | None = None  # observation threshold (MEMGATE_ACTIVATION_TOKENS)
    observation_budget_tokens: int | None = None  # reflection threshold (MEMGATE_OBSERVATION_BUDGET_TOKENS)
    context_budget_tokens: int | None = None  # memory injected per request (MEMGATE_CONTEXT_BUDGET_TOKENS)
    related_budget_tokens: int | None = None  # of it, most for recall (MEMGATE_RELATED_BUDGET_TOKENS)


class MemoryBudget(msgspec.Struct, frozen=True):
    """What one request of a tenant may inject: its tenant's budgets, else the gateway's."""

    budget_tokens: int
    related_budget_tokens: int | None  # None: whatever the budget leaves


def settings_error(settings: TenantSettings) -> tuple[str, str] | None:
    """(field, why) for the first setting out of range, or None when all are valid."""
    ranges = {"activation_tokens": THRESHOLD_RANGE, "observation_budget_tokens": THRESHOLD_RANGE,
              "context_budget_tokens": BUDGET_RANGE, "related_budget_tokens": BUDGET_RANGE}
    for field, (low, high) in ranges.items():
        value = getattr(settings, field)
        if value is not None and not low <= value <= high:
            return field, f"must be a whole number from {low:,} to {high:,}"
    return None


class TenantSettingsRepository:
    def __init__(self, db: Database, *, cache_seconds: float = CACHE_SECONDS) -> None:
        self.db = db
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, TenantSettings]] = {}

    async def get(self, tenant: str) -> TenantSettings:
        """The tenant's overrides, read now (all None when it has none)."""
        row = await self.db.pool.fetchrow(
            "SELECT activation_tokens, observation_budget_tokens, context_budget_tokens, related_budget_tokens "
            "FROM tenant_settings WHERE tenant = $1", tenant)
        return TenantSettings(**dict(row)) if row is not None else TenantSettings()

    async def save(self, tenant: str, settings: TenantSettings) -> None:
        """Store all of the tenant's overrides at once (None clears one). ValueError when one
        is out of range (nothing is stored)."""
        problem = settings_error(settings)
        if problem is not None:
            raise ValueError(f"{problem[0]} {problem[1]}")
        await self.db.pool.execute(
            "INSERT INTO tenant_settings (tenant, activation_tokens, observation_budget_tokens, context_budget_tokens, "
            "related_budget_tokens) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant) DO UPDATE SET "
            "activation_tokens = $2, observation_budget_tokens = $3, context_budget_tokens = $4, "
            "related_budget_tokens = $5, updated_at = now()",
            tenant, settings.activation_tokens, settings.observation_budget_tokens, settings.context_budget_tokens,
            settings.related_budget_tokens)
        self._cache.pop(tenant, None)

    async def memory_budget(self, tenant: str, *, budget_tokens: int,
                            related_budget_tokens: int | None) -> MemoryBudget:
        """The tenant's budgets, else the given gateway defaults (cached: see the module)."""
        now = time.monotonic()
        hit = self._cache.get(tenant)
        if hit is not None and hit[0] > now:
            settings = hit[1]
        else:
            try:
                settings = await self.get(tenant)
            except Exception as exc:  # Postgres away: the last known settings, else the defaults
                log.debug("tenant settings unreadable, using the last known: %r", exc)
                settings = hit[1] if hit is not None else TenantSettings()
            else:
                if len(self._cache) > 10_000:
                    self._cache.clear()
                self._cache[tenant] = (now + self.cache_seconds, settings)
        return MemoryBudget(settings.context_budget_tokens or budget_tokens,
                            settings.related_budget_tokens or related_budget_tokens)
