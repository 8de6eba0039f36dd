"""Observations, the observer's idempotency markers, and activation."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

import asyncpg
import msgspec

from memgate_store.database import Database


class Observation(msgspec.Struct, frozen=True):
    id: str
    tenant: str
    thread_id: str
    resource_id: str
    exchange_id: str
    text: str
    priority: str
    observed_on: date
    tokens: int
    source_message_ids: list[str]
    active: bool = False
    generation: int = 0
    created_at: datetime | None = None


_COLUMNS = (
    "id, tenant, thread_id, resource_id, exchange_id, text, priority, observed_on, tokens, "
    "source_message_ids, active, generation, created_at"
)


class ObservationRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def already_observed(self, tenant: str, exchange_id: str) -> bool:
        return bool(
            await self.db.pool.fetchval(
                "SELECT 1 FROM observed_exchanges WHERE tenant = $1 AND exchange_id = $2", tenant, exchange_id
            )
        )

    async def record(
        self, conn: asyncpg.Connection, tenant: str, thread_id: str, exchange_id: str,
        observer: str, observations: Sequence[Observation],
    ) -> bool:
        """Write one exchange's observations and its marker in the caller's transaction.

        Returns False when another delivery already recorded this exchange.
        """
        marked = await conn.fetchval(
            "INSERT INTO observed_exchanges (tenant, exchange_id, thread_id, observer) VALUES ($1, $2, $3, $4) "
            "ON CONFLICT DO NOTHING RETURNING 1",
            tenant, exchange_id, thread_id, observer,
        )
        if not marked:
            return False
        if observations:
            await conn.executemany(
                "INSERT INTO observations (id, tenant, thread_id, resource_id, exchange_id, text, priority, "
                "observed_on, tokens, source_message_ids) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) "
                "ON CONFLICT (id) DO NOTHING",
                [
                    (o.id, o.tenant, o.thread_id, o.resource_id, o.exchange_id, o.text, o.priority,
                     o.observed_on, o.tokens, o.source_message_ids)
                    for o in observations
                ],
            )
        return True

    async def for_thread(self, tenant: str, thread_id: str, *, active_only: bool = False) -> list[Observation]:
        rows = await self.db.pool.fetch(
            f"SELECT {_COLUMNS} FROM observations WHERE tenant = $1 AND thread_id = $2 "
            "AND (NOT $3 OR active) ORDER BY observed_on, created_at, id",
            tenant, thread_id, active_only,
        )
        return [Observation(**dict(r)) for r in rows]

    async def exist_elsewhere(self, tenant: str, resource_id: str, thread_id: str) -> bool:
        """Whether the resource has observations in threads other than this one."""
        return bool(await self.db.pool.fetchval(
            "SELECT EXISTS (SELECT 1 FROM observations WHERE tenant = $1 AND resource_id = $2 AND thread_id <> $3)",
            tenant, resource_id, thread_id,
        ))

    async def count(self, tenant: str, *, resource_id: str | None = None) -> int:
        return await self.db.pool.fetchval(
            "SELECT count(*) FROM observations WHERE tenant = $1 AND ($2::text IS NULL OR resource_id = $2)",
            tenant, resource_id,
        )

    async def activate(self, conn: asyncpg.Connection, tenant: str, thread_id: str, *, threshold: int, keep_raw: int) -> int:
        """Let observations replace raw messages once the raw tail grows past `threshold` tokens.

        The oldest observed, uncovered messages are covered until at most `keep_raw` tokens
        stay raw; observations all of whose sources are covered become active.
        Returns the number of messages covered.
        """
        raw = await conn.fetchval(
            "SELECT coalesce(sum(tokens), 0) FROM messages WHERE tenant = $1 AND thread_id = $2 AND NOT covered",
            tenant, thread_id,
        )
        if raw <= threshold:  # the common case: one aggregate, no rows fetched
            return 0
        rows = await conn.fetch(
            """
            SELECT m.id, m.tokens, EXISTS (
                SELECT 1 FROM observed_exchanges e WHERE e.tenant = m.tenant AND e.exchange_id = m.exchange_id
            ) AS observed
            FROM messages m WHERE m.tenant = $1 AND m.thread_id = $2 AND NOT m.covered
            ORDER BY m.created_at, m.id
            """,
            tenant, thread_id,
        )
        raw = sum(r["tokens"] for r in rows)
        cover: list[str] = []
        for r in rows:
            if raw <= keep_raw or not r["observed"]:
                break
            cover.append(r["id"])
            raw -= r["tokens"]
        if not cover:
            return 0
        await conn.execute("UPDATE messages SET covered = true WHERE id = ANY($1::text[])", cover)
        # New observations start inactive and do not change the injected context; activation
        # does, so it (alone) bumps the version the context service checks.
        await conn.execute(
            "UPDATE threads SET observations_version = observations_version + 1 WHERE tenant = $1 AND thread_id = $2",
            tenant, thread_id,
        )
        await conn.execute(
            """
            UPDATE observations o SET active = true
            WHERE o.tenant = $1 AND o.thread_id = $2 AND NOT o.active AND NOT EXISTS (
                SELECT 1 FROM messages m WHERE m.id = ANY(o.source_message_ids) AND NOT m.covered
            )
            """,
            tenant, thread_id,
        )
        return len(cover)
