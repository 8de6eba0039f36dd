"""Threads and their messages."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import asyncpg
import msgspec

from memgate_core.events import MessageRecord
from memgate_core.tokens import count_tokens
from memgate_store.database import Database


class ThreadSummary(msgspec.Struct, frozen=True):
    thread_id: str
    resource_id: str
    created_at: datetime
    updated_at: datetime
    message_count: int
    observation_count: int


class StoredMessage(msgspec.Struct, frozen=True):
    id: str
    thread_id: str
    exchange_id: str
    role: str
    content: str
    tokens: int
    created_at: datetime
    interrupted: bool
    seq: int = 0  # insertion order within the database


_MESSAGE_FIELDS = ("id", "thread_id", "exchange_id", "role", "content", "tokens", "created_at", "interrupted", "seq")
_MESSAGE_COLUMNS = ", ".join(_MESSAGE_FIELDS)


# Whether the resource ($3) has threads other than $2 (whose memory recall may find): one
# probe of threads_by_resource that stops at the second row at the latest.
_RELATED = """EXISTS (SELECT 1 FROM threads o WHERE o.tenant = $1 AND o.resource_id = $3 AND o.thread_id <> $2)
           AS related"""


class ThreadVersions(msgspec.Struct, frozen=True):
    created_at: datetime  # tells a re-created thread (same id, after a delete) from the old one
    messages_version: int
    observations_version: int
    related: bool  # the resource has other threads


class ResourceSummary(msgspec.Struct, frozen=True):
    resource_id: str
    thread_count: int
    updated_at: datetime


_THREAD_SUMMARY = """
    SELECT t.thread_id, t.resource_id, t.created_at, t.updated_at,
           (SELECT count(*) FROM messages m WHERE m.tenant = t.tenant AND m.thread_id = t.thread_id) AS message_count,
           (SELECT count(*) FROM observations o WHERE o.tenant = t.tenant AND o.thread_id = t.thread_id) AS observation_count
    FROM threads t
"""


# One statement, one round trip: create the thread if needed, insert the messages, and bump
# the thread's version only when a message was new (the context service re-reads the thread
# on a bump; a redelivered exchange must not cause one). $12: wait for the WAL flush or not.
_ADD_MESSAGES = """
    WITH allowed AS (  -- a thread deleted while this exchange was running stays deleted
        SELECT NOT EXISTS (SELECT 1 FROM thread_tombstones
                           WHERE tenant = $1 AND thread_id = $2 AND deleted_at >= $11) AS ok
        FROM (SELECT set_config('synchronous_commit',  -- this statement's own transaction only
                                CASE WHEN $12 THEN current_setting('synchronous_commit') ELSE 'off' END,
                                true)) AS commit_mode
    ), created AS (  -- only a thread this statement's snapshot lacks: one being deleted
                     -- meanwhile must not be re-created when the delete commits
        INSERT INTO threads (tenant, thread_id, resource_id, messages_version)
        SELECT $1, $2, $3, 1 FROM allowed
        WHERE ok AND NOT EXISTS (SELECT 1 FROM threads WHERE tenant = $1 AND thread_id = $2)
        -- Another statement created it since this one's snapshot: `held` cannot see that row,
        -- but the conflict locks and returns it (and `bumped` cannot see it: bump here).
        ON CONFLICT (tenant, thread_id) DO UPDATE
            SET updated_at = now(), messages_version = threads.messages_version + 1
        RETURNING 1
    ), held AS (  -- locked until commit, before any seq is drawn: a thread's seqs follow commit order
        SELECT 1 FROM threads WHERE tenant = $1 AND thread_id = $2 FOR NO KEY UPDATE
    ), thread AS (  -- (one this statement creates is held by its uncommitted insert)
        SELECT 1 FROM created
        UNION ALL
        SELECT 1 FROM held, allowed WHERE ok
        LIMIT 1
    ), added AS (
        INSERT INTO messages (id, tenant, thread_id, exchange_id, role, content, tokens, created_at, interrupted)
        SELECT m.id, $1, $2, $4, m.role, m.content, m.tokens, m.created_at, m.interrupted
        FROM unnest($5::text[], $6::text[], $7::text[], $8::int[], $9::timestamptz[], $10::bool[])
             AS m(id, role, content, tokens, created_at, interrupted), thread
        ON CONFLICT (id) DO NOTHING
        RETURNING 1
    ), bumped AS (  -- (a thread created by this statement already starts at version 1)
        UPDATE threads SET updated_at = now(), messages_version = messages_version + 1
        WHERE tenant = $1 AND thread_id = $2 AND EXISTS (SELECT 1 FROM added)
    )
    SELECT count(*) FROM added
"""


# SQLSTATE classes of a refusal that is about the statements themselves: data exceptions,
# integrity constraints, a rolled-back transaction (deadlock). Not a server going away.
_REFUSALS = ("22", "23", "40")


class BatchRefused(Exception):
    """Postgres refused one of a batch's statements (its data, a deadlock): nothing of the
    batch was stored. One at a time, the others would be."""


class NewMessages(msgspec.Struct, frozen=True):
    """One exchange's messages, to be stored in its thread."""

    tenant: str
    thread_id: str
    resource_id: str
    exchange_id: str
    messages: Sequence[MessageRecord]
    interrupted: bool = False


class ThreadRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def bind(self, tenant: str, thread_id: str, resource_id: str) -> str:
        """Create the thread if new; return the resource it is bound to (maybe another one).

        The no-op update makes the statement return the row even when a concurrent request
        created it a moment ago (a plain DO NOTHING would return nothing then).
        """
        return await self.db.pool.fetchval(
            """
            INSERT INTO threads (tenant, thread_id, resource_id) VALUES ($1, $2, $3)
            ON CONFLICT (tenant, thread_id) DO UPDATE SET resource_id = threads.resource_id
            RETURNING resource_id
            """,
            tenant, thread_id, resource_id,
        )

    async def add_messages(
        self,
        tenant: str,
        thread_id: str,
        resource_id: str,
        exchange_id: str,
        messages: Sequence[MessageRecord],
        *,
        interrupted: bool = False,
        durable: bool = True,
    ) -> int:
        """Insert messages idempotently (by id); returns how many were new.

        `durable=False` commits without waiting for the WAL flush: for a copy whose durable
        original lives elsewhere (the edge's read-your-writes copy of an exchange that is
        also in JetStream, from which the observer stores it durably).
        """
        if not messages:
            return 0
        new = NewMessages(tenant, thread_id, resource_id, exchange_id, messages, interrupted)
        return await self.db.pool.fetchval(_ADD_MESSAGES, *_add_arguments(new, durable))

    async def add_many(self, batch: Sequence[NewMessages], *, durable: bool = True) -> list[int]:
        """`add_messages` for several exchanges in one transaction and one round trip; how
        many messages of each were new. All or nothing: on an error, none is stored
        (`BatchRefused` when Postgres refused a statement, not when it could not be reached)."""
        todo = [(i, new) for i, new in enumerate(batch) if new.messages]
        # Threads locked in one order (that of `delete_resource` too), so that nothing waits
        # in a cycle. A stable sort: a thread's exchanges keep their order, and so their seqs.
        todo.sort(key=lambda item: (item[1].tenant, item[1].thread_id))
        counts = [0] * len(batch)
        if todo:
            async with self.db.pool.acquire() as connection:
                try:
                    rows = await connection.fetchmany(_ADD_MESSAGES, [_add_arguments(new, durable) for _, new in todo])
                except asyncpg.PostgresError as exc:
                    if exc.sqlstate[:2] in _REFUSALS:
                        raise BatchRefused(f"{type(exc).__name__}: {exc}") from exc
                    raise
            for (i, _), row in zip(todo, rows, strict=True):
                counts[i] = row[0]
        return counts

    async def get(self, tenant: str, thread_id: str) -> ThreadSummary | None:
        row = await self.db.pool.fetchrow(_THREAD_SUMMARY + " WHERE t.tenant = $1 AND t.thread_id = $2", tenant, thread_id)
        return ThreadSummary(**dict(row)) if row else None

    async def list(
        self, tenant: str, *, resource_id: str | None = None, limit: int = 50, offset: int = 0
    ) -> list[ThreadSummary]:
        rows = await self.db.pool.fetch(
            _THREAD_SUMMARY
            + " WHERE t.tenant = $1 AND ($2::text IS NULL OR t.resource_id = $2)"
            " ORDER BY t.updated_at DESC, t.thread_id LIMIT $3 OFFSET $4",
            tenant, resource_id, limit, offset,
        )
        return [ThreadSummary(**dict(r)) for r in rows]

    async def resources(self, tenant: str, *, limit: int = 100, offset: int = 0) -> list[ResourceSummary]:
        rows = await self.db.pool.fetch(
            "SELECT resource_id, count(*) AS thread_count, max(updated_at) AS updated_at FROM threads "
            "WHERE tenant = $1 GROUP BY resource_id ORDER BY max(updated_at) DESC LIMIT $2 OFFSET $3",
            tenant, limit, offset,
        )
        return [ResourceSummary(**dict(r)) for r in rows]

    async def messages(
        self, tenant: str, thread_id: str, *, limit: int = 1000, uncovered_only: bool = False
    ) -> list[StoredMessage]:
        """The thread's newest `limit` messages, oldest first (optionally only those still raw)."""
        rows = await self.db.pool.fetch(
            f"""
            SELECT * FROM (
                SELECT {_MESSAGE_COLUMNS}
                FROM messages WHERE tenant = $1 AND thread_id = $2 AND (NOT $4 OR NOT covered)
                ORDER BY created_at DESC, id DESC LIMIT $3
            ) newest ORDER BY created_at, id
            """,
            tenant, thread_id, limit, uncovered_only,
        )
        return [StoredMessage(**dict(r)) for r in rows]

    async def previous_message(self, tenant: str, thread_id: str, before: datetime) -> StoredMessage | None:
        """The thread's newest message sent before `before` (what a new message follows)."""
        row = await self.db.pool.fetchrow(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE tenant = $1 AND thread_id = $2 AND created_at < $3 "
            "ORDER BY created_at DESC, id DESC LIMIT 1",
            tenant, thread_id, before,
        )
        return StoredMessage(**dict(row)) if row else None

    async def versions(self, tenant: str, thread_id: str, resource_id: str) -> ThreadVersions | None:
        """The thread's change counters, and whether its resource has other threads."""
        row = await self.db.pool.fetchrow(
            f"""
            SELECT created_at, messages_version, observations_version,
                   {_RELATED}
            FROM threads WHERE tenant = $1 AND thread_id = $2
            """,
            tenant, thread_id, resource_id,
        )
        return ThreadVersions(**dict(row)) if row else None

    async def changes(
        self, tenant: str, thread_id: str, resource_id: str, after_seq: int
    ) -> tuple[ThreadVersions | None, list[StoredMessage]]:
        """`versions`, and the raw (uncovered) messages stored after `after_seq` (insertion
        order, whatever their time), in one round trip and one snapshot."""
        rows = await self.db.pool.fetch(
            f"""
            WITH thread AS (
                SELECT created_at AS thread_created_at, messages_version, observations_version,
                       {_RELATED}
                FROM threads WHERE tenant = $1 AND thread_id = $2
            )
            -- Ordered by seq: the (tenant, thread_id, seq) index answers with a short range
            -- scan however long the thread is; the few rows are put in time order below.
            SELECT thread.*, fresh.* FROM thread LEFT JOIN LATERAL (
                SELECT {_MESSAGE_COLUMNS} FROM messages
                WHERE tenant = $1 AND thread_id = $2 AND seq > $4 AND NOT covered
                ORDER BY seq
            ) fresh ON true
            """,
            tenant, thread_id, resource_id, after_seq,
        )
        if not rows:
            return None, []
        first = rows[0]
        versions = ThreadVersions(first["thread_created_at"], first["messages_version"], first["observations_version"],
                                  first["related"])
        fresh = [StoredMessage(*(r[c] for c in _MESSAGE_FIELDS)) for r in rows if r["id"] is not None]
        return versions, sorted(fresh, key=lambda m: (m.created_at, m.id))

    async def last_seq(self, tenant: str, thread_id: str) -> int:
        return await self.db.pool.fetchval(
            "SELECT coalesce(max(seq), 0) FROM messages WHERE tenant = $1 AND thread_id = $2", tenant, thread_id)

    async def delete(self, tenant: str, thread_id: str) -> bool:
        return bool(await self._delete_where("thread_id", tenant, thread_id))

    async def delete_resource(self, tenant: str, resource_id: str) -> list[str]:
        """Delete the resource's threads; returns their ids."""
        return await self._delete_where("resource_id", tenant, resource_id)

    async def _delete_where(self, column: str, tenant: str, value: str) -> list[str]:
        async with self.db.pool.acquire() as conn, conn.transaction():
            # Rows locked in `add_many`'s order (code points, so collation "C"): a resource's
            # delete and a batch of stores into its threads cannot deadlock.
            await conn.execute(
                f'SELECT 1 FROM threads WHERE tenant = $1 AND {column} = $2 ORDER BY thread_id COLLATE "C" FOR UPDATE',
                tenant, value,
            )
            deleted = await conn.fetch(
                f"DELETE FROM threads WHERE tenant = $1 AND {column} = $2 RETURNING thread_id", tenant, value
            )
            await conn.execute(
                "INSERT INTO thread_tombstones (tenant, thread_id) SELECT $1, t FROM unnest($2::text[]) AS t "
                "ON CONFLICT (tenant, thread_id) DO UPDATE SET deleted_at = now()",
                tenant, [r["thread_id"] for r in deleted],
            )
            await conn.execute("DELETE FROM thread_tombstones WHERE deleted_at < now() - interval '8 days'")
        return [r["thread_id"] for r in deleted]

    async def deleted_since(self, tenant: str, thread_id: str, since: datetime) -> bool:
        """Whether the thread was deleted at or after `since` (its events then must not revive it)."""
        return bool(await self.db.pool.fetchval(
            "SELECT 1 FROM thread_tombstones WHERE tenant = $1 AND thread_id = $2 AND deleted_at >= $3",
            tenant, thread_id, since,
        ))


def _add_arguments(new: NewMessages, durable: bool) -> tuple[object, ...]:
    """`_ADD_MESSAGES`'s parameters: the messages go as one array per column."""
    messages = new.messages
    rows = [
        (m.id, m.role, m.content, count_tokens(m.content), datetime.fromtimestamp(m.created_at, UTC),
         new.interrupted and m.role == "assistant")
        for m in messages
    ]
    return (new.tenant, new.thread_id, new.resource_id, new.exchange_id, *map(list, zip(*rows)),
            datetime.fromtimestamp(min(m.created_at for m in messages), UTC), durable)
