"""Per-request usage: rows written in batches (COPY), and the report over them."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta

import asyncpg
import msgspec

from memgate_store.database import Database

_COLUMNS = ("created_at", "tenant", "key_id", "model", "provider", "status", "stream", "memory",
            "input_tokens", "output_tokens", "latency_ms", "route_model", "byok", "cost_usd",
            "request_id", "thread_id", "resource_id", "ttft_ms", "memory_tokens", "lookup_ms", "memory_degraded",
            "trace_id")
_MEMORY_COLUMNS = ("request_id", "tenant", "created_at", "thread_ids", "block", "thread_observations",
                   "recent_messages", "recalled")


log = logging.getLogger("memgate.store.usage")

_RELATIVE = re.compile(r"(\d+)([mhd])")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


def _now() -> datetime:
    return datetime.now(UTC)


def parse_since(value: str, now: datetime | None = None) -> datetime:
    """An ISO 8601 time or date (UTC unless it says otherwise), or an age: 30m, 24h, 7d."""
    value = value.strip()
    relative = _RELATIVE.fullmatch(value)
    if relative:
        try:
            return (now or _now()) - timedelta(**{_UNITS[relative[2]]: int(relative[1])})
        except OverflowError:  # before year 1
            raise ValueError(f"{value!r} reaches back before the year 1") from None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
    except ValueError:
        raise ValueError(f"expected an ISO 8601 time (2026-01-31T12:00:00Z), a date, or an age (30m, 24h, 7d); "
                         f"got {value!r}") from None
    try:  # (in range with its offset is not always in range in UTC: 0001-01-01T00:00+05:00)
        return when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)
    except OverflowError:
        raise ValueError(f"{value!r} lies outside the years 1 to 9999 in UTC") from None


class RecalledItem(msgspec.Struct, frozen=True, omit_defaults=True):
    """One item recall added to a block: what, from which thread, with what relevance. Its
    text is in the block (and in its thread, while it lasts): not written a second time."""

    kind: str  # observation | message
    id: str
    thread_id: str
    score: float | None = None
    text: str = ""  # filled in when the log is read


class InjectedMemory(msgspec.Struct, frozen=True):
    """The memory block one request was given, and why, kept for the request log: the
    thread's own items by number, recall's one by one (the interesting "why")."""

    block: str
    thread_observations: int
    recent_messages: int
    recalled: list[RecalledItem]


class UsageRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One proxied request, as the edge saw it: its usage row and its request-log details."""

    tenant: str
    key_id: str | None
    model: str  # as the client asked for it (provider/model)
    provider: str
    status: int  # the HTTP status the client got
    stream: bool
    memory: bool  # x-thread-id + x-resource-id were sent
    input_tokens: int = 0
    output_tokens: int = 0
    latency_ms: float = 0.0
    route_model: str = ""  # the model the answering provider was asked for (what is priced)
    byok: bool = False  # the caller's own provider key: the provider bills the caller
    cost_usd: float | None = None  # None: no known price
    at: datetime = msgspec.field(default_factory=_now)
    request_id: str | None = None
    thread_id: str | None = None
    resource_id: str | None = None
    ttft_ms: float | None = None  # streams: until the first byte went to the client
    memory_tokens: int | None = None  # the injected block's (None: no memory asked)
    lookup_ms: float | None = None
    memory_degraded: str | None = None  # why memory was left out (None: it was not)
    trace_id: str | None = None
    injected: InjectedMemory | None = None  # the block, when one was injected

    def row(self) -> tuple[object, ...]:
        return (self.at, self.tenant, self.key_id, self.model, self.provider, self.status, self.stream,
                self.memory, self.input_tokens, self.output_tokens, self.latency_ms, self.route_model or None,
                self.byok, self.cost_usd, self.request_id, self.thread_id, self.resource_id, self.ttft_ms,
                self.memory_tokens, self.lookup_ms, self.memory_degraded, self.trace_id)

    def memory_row(self) -> tuple[object, ...] | None:
        memory = self.injected
        if memory is None or self.request_id is None or self.thread_id is None:
            return None
        threads = list(dict.fromkeys([self.thread_id, *(i.thread_id for i in memory.recalled)]))
        return (self.request_id, self.tenant, self.at, threads, memory.block, memory.thread_observations,
                memory.recent_messages, _items_json.encode(memory.recalled).decode())


_items_json = msgspec.json.Encoder()


class UsageRow(msgspec.Struct, omit_defaults=True):
    """Totals of one group (a model, a provider, a key, or everything)."""

    requests: int
    errors: int  # status >= 400
    input_tokens: int
    output_tokens: int
    streamed: int
    with_memory: int
    avg_latency_ms: float
    p95_latency_ms: float
    cost_usd: float  # of the priced requests (BYOK ones included: see byok_cost_usd)
    byok_cost_usd: float  # of those the callers' own provider keys paid for
    unpriced: int  # answered requests without a known price
    model: str | None = None
    provider: str | None = None
    key_id: str | None = None
    tenant: str | None = None
    key_prefix: str | None = None
    key_name: str | None = None


class UsageReport(msgspec.Struct):
    since: datetime
    until: datetime
    tenant: str | None  # None: every tenant
    totals: UsageRow
    by_model: list[UsageRow]
    by_provider: list[UsageRow]
    by_key: list[UsageRow]
    object: str = "usage_report"


_REPORT = """
WITH groups AS (
    SELECT GROUPING(model, provider, key_id) AS g, model, provider, key_id, min(tenant) AS tenant,
           count(*) AS requests, count(*) FILTER (WHERE status >= 400) AS errors,
           coalesce(sum(input_tokens), 0) AS input_tokens, coalesce(sum(output_tokens), 0) AS output_tokens,
           count(*) FILTER (WHERE stream) AS streamed, count(*) FILTER (WHERE memory) AS with_memory,
           coalesce(avg(latency_ms), 0) AS avg_latency_ms,
           coalesce(percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms), 0) AS p95_latency_ms,
           coalesce(sum(cost_usd), 0) AS cost_usd, coalesce(sum(cost_usd) FILTER (WHERE byok), 0) AS byok_cost_usd,
           count(*) FILTER (WHERE cost_usd IS NULL AND status < 400) AS unpriced
    FROM usage_events
    WHERE created_at >= $1 AND created_at < $2 AND ($3::text IS NULL OR tenant = $3)
    GROUP BY GROUPING SETS ((), (model), (provider), (key_id))
)
SELECT groups.*, k.prefix AS key_prefix, k.name AS key_name
FROM groups LEFT JOIN api_keys k ON k.id = groups.key_id AND groups.g = 6
ORDER BY groups.g, groups.requests DESC, groups.model, groups.provider, groups.key_id
"""
# GROUPING(model, provider, key_id) is a bitmask of the columns *not* grouped by:
# 7 = totals, 3 = by model, 5 = by provider, 6 = by key.
_TOTALS, _BY_MODEL, _BY_PROVIDER, _BY_KEY = 7, 3, 5, 6


_FORGOTTEN_WHILE_BUFFERED = """
DELETE FROM request_memory r USING thread_tombstones t
WHERE r.request_id = ANY($1::text[]) AND t.tenant = r.tenant AND t.thread_id = ANY(r.thread_ids)
  AND t.deleted_at >= r.created_at
"""


# A row's values the database or the driver cannot take: data, not an outage.
_REFUSED = (asyncpg.DataError, OverflowError, ValueError, UnicodeEncodeError)


class UsageNotWritten(Exception):
    """The rows of a batch that are not written (Postgres could not be reached)."""

    def __init__(self, rows: list[UsageRecord]) -> None:
        super().__init__(f"{len(rows)} usage rows not written")
        self.rows = rows


class UsageRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def insert_many(self, records: list[UsageRecord]) -> list[UsageRecord]:
        """Write the rows in one COPY; returns those refused as data (a NUL in a text, a
        number too large for its column), written around one by one: a bad row is set
        aside and never blocks the others. A connection error raises `UsageNotWritten`
        with the rows not written yet (the caller keeps those)."""
        try:
            await self._copy(records)
            return []
        except _REFUSED:
            if len(records) == 1:
                return list(records)
        except Exception as exc:
            raise UsageNotWritten(records) from exc
        refused = []
        for i, record in enumerate(records):
            try:
                await self._copy([record])
            except _REFUSED:
                refused.append(record)
            except Exception as exc:
                raise UsageNotWritten(records[i:]) from exc
        return refused

    async def prune_blocks(self, keep_days: int) -> int:
        """Delete the request log's memory blocks older than `keep_days`; returns how many."""
        done = await self.db.pool.execute(
            "DELETE FROM request_memory WHERE created_at < now() - make_interval(days => $1)", keep_days)
        return int(done.split()[-1])

    async def report(self, since: datetime, until: datetime | None = None, tenant: str | None = None) -> UsageReport:
        until = until or _now()
        rows = await self.db.pool.fetch(_REPORT, since, until, tenant)
        empty = UsageRow(0, 0, 0, 0, 0, 0, 0.0, 0.0, 0.0, 0.0, 0)
        parts: dict[int, list[UsageRow]] = {_TOTALS: [], _BY_MODEL: [], _BY_PROVIDER: [], _BY_KEY: []}
        for r in rows:
            g = r["g"]
            parts[g].append(UsageRow(
                requests=r["requests"], errors=r["errors"], input_tokens=int(r["input_tokens"]),
                output_tokens=int(r["output_tokens"]), streamed=r["streamed"], with_memory=r["with_memory"],
                avg_latency_ms=round(float(r["avg_latency_ms"]), 2), p95_latency_ms=round(float(r["p95_latency_ms"]), 2),
                cost_usd=round(float(r["cost_usd"]), 8), byok_cost_usd=round(float(r["byok_cost_usd"]), 8),
                unpriced=r["unpriced"],
                model=r["model"] if g == _BY_MODEL else None,
                provider=r["provider"] if g == _BY_PROVIDER else None,
                key_id=r["key_id"] if g == _BY_KEY else None,
                tenant=r["tenant"] if g == _BY_KEY else None,
                key_prefix=r["key_prefix"], key_name=r["key_name"],
            ))
        totals = parts[_TOTALS][0] if parts[_TOTALS] else empty
        return UsageReport(since=since, until=until, tenant=tenant, totals=totals, by_model=parts[_BY_MODEL],
                           by_provider=parts[_BY_PROVIDER], by_key=parts[_BY_KEY])

    async def _copy(self, records: list[UsageRecord]) -> None:
        blocks = [row for row in (r.memory_row() for r in records) if row is not None]
        try:
            async with self.db.pool.acquire() as conn, conn.transaction():
                await conn.copy_records_to_table("usage_events", records=[r.row() for r in records], columns=_COLUMNS)
                if blocks:
                    await conn.copy_records_to_table("request_memory", records=blocks, columns=_MEMORY_COLUMNS)
                    # A thread deleted while its block waited in the edge's buffer: not kept.
                    await conn.execute(_FORGOTTEN_WHILE_BUFFERED, [b[0] for b in blocks])
        except asyncpg.UniqueViolationError:
            # (a block's request id is written already: this batch committed before, and only
            # the answer to it was lost; writing it again would count its usage twice)
            log.info("usage: a batch written before was retried; not written again")
