"""The request log: each proxied request as the dashboard's Logs and Usage pages show it.

Rows are the usage rows (`memgate_store.usage`, written in batches by the edge) with the
memory block each request was given (`request_memory`). Reads are always of one tenant.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

import asyncpg
import msgspec

from memgate_store.database import Database
from memgate_store.usage import InjectedMemory, RecalledItem

PAGE_SIZE = 50


class LogFilter(msgspec.Struct, frozen=True, kw_only=True):
    """What the Logs page narrows the log to; None: any."""

    since: datetime | None = None  # (the page always gives one)
    until: datetime | None = None
    status: str | None = None  # "ok" (< 400), "error" (>= 400), or one code ("429")
    model: str | None = None  # as asked, or the route's model
    thread_id: str | None = None


class LogEntry(msgspec.Struct, frozen=True):
    """One request of the log."""

    at: datetime
    request_id: str | None
    key_id: str | None
    key_name: str | None
    key_prefix: str | None
    model: str
    provider: str
    route_model: str | None
    status: int
    stream: bool
    latency_ms: float
    ttft_ms: float | None
    input_tokens: int
    output_tokens: int
    memory_tokens: int | None
    lookup_ms: float | None
    memory_degraded: str | None
    cost_usd: float | None
    byok: bool
    thread_id: str | None
    resource_id: str | None
    trace_id: str | None


class DailyUsage(msgspec.Struct, frozen=True):
    """One day's usage of one model through one key."""

    day: date
    model: str
    key_id: str | None
    key_name: str | None
    requests: int
    errors: int
    input_tokens: int
    output_tokens: int
    memory_tokens: int
    cost_usd: float
    byok_cost_usd: float


_ENTRY = """
SELECT u.created_at AS at, u.request_id, u.key_id, k.name AS key_name, k.prefix AS key_prefix, u.model, u.provider,
       u.route_model, u.status, u.stream, u.latency_ms, u.ttft_ms, u.input_tokens, u.output_tokens,
       u.memory_tokens, u.lookup_ms, u.memory_degraded, u.cost_usd, u.byok, u.thread_id, u.resource_id, u.trace_id
FROM usage_events u LEFT JOIN api_keys k ON k.id = u.key_id
"""

_PAGE = _ENTRY + """
WHERE u.tenant = $1
  AND ($2::timestamptz IS NULL OR u.created_at >= $2) AND ($3::timestamptz IS NULL OR u.created_at < $3)
  AND ($4::int IS NULL OR u.status = $4)
  AND ($5::bool IS NULL OR (u.status >= 400) = $5)
  AND ($6::text IS NULL OR u.model = $6 OR u.route_model = $6)
  AND ($7::text IS NULL OR u.thread_id = $7)
ORDER BY u.created_at DESC LIMIT $8 OFFSET $9
"""

_DAILY = """
SELECT date_trunc('day', u.created_at AT TIME ZONE 'UTC')::date AS day, u.model, u.key_id,
       min(k.name) AS key_name, count(*) AS requests, count(*) FILTER (WHERE u.status >= 400) AS errors,
       coalesce(sum(u.input_tokens), 0) AS input_tokens, coalesce(sum(u.output_tokens), 0) AS output_tokens,
       coalesce(sum(u.memory_tokens), 0) AS memory_tokens, coalesce(sum(u.cost_usd), 0) AS cost_usd,
       coalesce(sum(u.cost_usd) FILTER (WHERE u.byok), 0) AS byok_cost_usd
FROM usage_events u LEFT JOIN api_keys k ON k.id = u.key_id
WHERE u.tenant = $1 AND u.created_at >= $2 AND u.created_at < $3
GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
"""

_ITEM_TEXTS = """
SELECT id, role || ': ' || content AS text FROM messages WHERE tenant = $1 AND id = ANY($2::text[])
UNION ALL SELECT id, text FROM observations WHERE tenant = $1 AND id = ANY($2::text[])
"""

_recalled = msgspec.json.Decoder(list[RecalledItem])


class RequestLogRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def page(self, tenant: str, where: LogFilter, *, offset: int = 0,
                   limit: int = PAGE_SIZE) -> list[LogEntry]:
        """The tenant's requests, newest first, that `where` lets through."""
        status = where.status
        code = int(status) if status and status.isascii() and status.isdigit() else None
        errors = {"ok": False, "error": True}.get(status or "")
        rows = await self.db.pool.fetch(_PAGE, tenant, where.since, where.until, code, errors, where.model or None,
                                        where.thread_id or None, limit, offset)
        return [LogEntry(**dict(r)) for r in rows]

    async def entry(self, tenant: str, request_id: str) -> tuple[LogEntry, InjectedMemory | None] | None:
        """One request of the tenant and the memory block it was given (None: none kept)."""
        row = await self.db.pool.fetchrow(_ENTRY + "WHERE u.tenant = $1 AND u.request_id = $2", tenant, request_id)
        if row is None:
            return None
        kept = await self.db.pool.fetchrow(
            "SELECT block, thread_observations, recent_messages, recalled::text AS recalled FROM request_memory "
            "WHERE tenant = $1 AND request_id = $2", tenant, request_id)
        if kept is None:
            return LogEntry(**dict(row)), None
        recalled = _recalled.decode(kept["recalled"])
        texts = {r["id"]: r["text"] for r in await self.db.pool.fetch(_ITEM_TEXTS, tenant, [i.id for i in recalled])}
        return LogEntry(**dict(row)), InjectedMemory(
            kept["block"], kept["thread_observations"], kept["recent_messages"],
            [msgspec.structs.replace(i, text=texts.get(i.id, "")) for i in recalled])

    async def models(self, tenant: str, since: datetime | None) -> list[str]:
        """The models the tenant asked for since then, or ever (the Logs page's filter choices)."""
        rows = await self.db.pool.fetch(
            "SELECT DISTINCT model FROM usage_events WHERE tenant = $1 AND ($2::timestamptz IS NULL OR created_at >= $2) "
            "ORDER BY model LIMIT 200",
            tenant, since)
        return [r["model"] for r in rows]

    async def daily(self, tenant: str, since: datetime, until: datetime) -> list[DailyUsage]:
        """Usage per UTC day, model and key."""
        rows = await self.db.pool.fetch(_DAILY, tenant, since, until)
        return [DailyUsage(day=r["day"], model=r["model"], key_id=r["key_id"], key_name=r["key_name"],
                           requests=r["requests"], errors=r["errors"], input_tokens=int(r["input_tokens"]),
                           output_tokens=int(r["output_tokens"]), memory_tokens=int(r["memory_tokens"]),
                           cost_usd=float(r["cost_usd"]), byok_cost_usd=float(r["byok_cost_usd"]))
                for r in rows]


async def forget_threads(conn: asyncpg.Connection, tenant: str, thread_ids: Sequence[str]) -> None:
    """Delete the kept blocks of these threads, and those that recalled anything of them (a
    thread deleted, or a message of it: any of its blocks may have held that message)."""
    if thread_ids:
        await conn.execute("DELETE FROM request_memory WHERE tenant = $1 AND thread_ids && $2::text[]",
                           tenant, list(thread_ids))
