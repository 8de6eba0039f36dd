"""Threads and their messages."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any, NamedTuple

import asyncpg
import msgspec

from memgate_core.events import ExchangeCompleted, MessageRecord, exchange_encoder
from memgate_core.tokens import count_tokens
from memgate_store.database import Database
from memgate_store.observations import thread_lock_key
from memgate_store.request_log import forget_threads


class ThreadSummary(msgspec.Struct, frozen=True):
    id: str
    thread_id: str  # (the id again: the name the memory API had before threads had `id`)
    resource_id: str
    title: str | None
    metadata: dict[str, str]
    created_at: datetime
    updated_at: datetime
    message_count: int
    observation_count: int
    object: str = "thread"


class MessagesDeleted(NamedTuple):
    message_ids: list[str]
    observation_ids: list[str]  # those that came only from deleted messages
    keys: list[tuple[datetime, str]]  # the deleted messages' (time, id): what followed each was indexed with it


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


def _summary(row: Any) -> ThreadSummary:
    return ThreadSummary(**{**dict(row), "metadata": msgspec.json.decode(row["metadata"])})


_MESSAGE_FIELDS = ("id", "thread_id", "exchange_id", "role", "content", "tokens", "created_at", "interrupted", "seq")
_MESSAGE_COLUMNS = ", ".join(_MESSAGE_FIELDS)


# What the reading snapshot cannot see yet (see `changes`): every transaction from its xmax
# on, and those in progress when it was taken (xip), as numbers.
_UNSEEN = """pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS xmax,
             ARRAY(SELECT x::text::bigint FROM pg_snapshot_xip(pg_current_snapshot()) AS x) AS xip"""


class Unseen(msgspec.Struct, frozen=True):
    """The transactions a read could not see: their stores may be new to the reader."""

    xmax: int  # every transaction from this one on
    xip: list[int]  # and these, in progress at the read

# Whether the resource ($3) has threads other than $2 (whose memory recall may find): one
# probe of threads_by_resource that stops at the second row at the latest.
_RELATED = """EXISTS (SELECT 1 FROM threads o WHERE o.tenant = $1 AND o.resource_id = $3 AND o.thread_id <> $2)
           AS related"""


class ThreadVersions(msgspec.Struct, frozen=True):
    created_at: datetime  # tells a re-created thread (same id, after a delete) from the old one
    observations_version: int
    related: bool  # the resource has other threads


class ResourceSummary(msgspec.Struct, frozen=True):
    resource_id: str
    thread_count: int
    updated_at: datetime


_THREAD_SUMMARY = """
    SELECT t.thread_id AS id, t.thread_id, t.resource_id, t.title, t.metadata::text AS metadata, t.created_at, t.updated_at,
           (SELECT count(*) FROM messages m WHERE m.tenant = t.tenant AND m.thread_id = t.thread_id) AS message_count,
           (SELECT count(*) FROM observations o WHERE o.tenant = t.tenant AND o.thread_id = t.thread_id) AS observation_count
    FROM threads t
"""

# Which threads a page lists: the tenant's ($1), of one resource ($2) or all, and whose id or
# title contains $3 ignoring case (strpos, not LIKE: the text is matched as it is).
_THREADS_WHERE = """t.tenant = $1 AND ($2::text IS NULL OR t.resource_id = $2)
    AND ($3::text IS NULL OR strpos(lower(t.thread_id), lower($3)) > 0
         OR strpos(lower(coalesce(t.title, '')), lower($3)) > 0)"""

# One statement, one round trip, one transaction: create the thread if needed, insert the
# exchange's messages, and write the outbox row that announces the exchange (the relay
# publishes it). Nothing of it is written for a thread deleted meanwhile. Stores into one
# thread do not wait for each other (the thread row is only key-share locked, and its
# `updated_at` moved at most once a second), so a busy thread's commits share WAL flushes.
_RECORD_EXCHANGE = """
    WITH allowed AS (  -- a thread deleted while this exchange was running stays deleted
        SELECT NOT EXISTS (SELECT 1 FROM thread_tombstones
                           WHERE tenant = $1 AND thread_id = $2 AND deleted_at >= $12) AS ok
    ), created AS (  -- only a thread this statement's snapshot lacks: one being deleted
                     -- meanwhile must not be re-created when the delete commits
        INSERT INTO threads (tenant, thread_id, resource_id)
        SELECT $1, $2, $3 FROM allowed
        WHERE ok AND NOT EXISTS (SELECT 1 FROM threads WHERE tenant = $1 AND thread_id = $2)
        -- Another statement created it since this one's snapshot: `held` cannot see that row,
        -- but the conflict locks and returns it.
        ON CONFLICT (tenant, thread_id) DO UPDATE SET updated_at = now()
        RETURNING 1
    ), held AS (  -- a delete of the thread waits for this store, or this store sees it gone
        SELECT 1 FROM threads WHERE tenant = $1 AND thread_id = $2 FOR KEY SHARE
    ), thread AS (  -- (one this statement creates is held by its uncommitted insert)
        SELECT 1 FROM created
        UNION ALL
        SELECT 1 FROM held, allowed WHERE ok
        LIMIT 1
    ), added AS (
        INSERT INTO messages (id, tenant, thread_id, exchange_id, role, name, content, tokens, created_at,
                              interrupted)
        SELECT m.id, $1, $2, $4, m.role, m.name, m.content, m.tokens, m.created_at, m.interrupted
        FROM unnest($5::text[], $6::text[], $7::text[], $8::text[], $9::int[], $10::timestamptz[], $11::bool[])
             AS m(id, role, name, content, tokens, created_at, interrupted), thread
        ON CONFLICT (id) DO NOTHING
        RETURNING 1
    ), touched AS (  -- the thread lists sort by it; a second's precision is plenty
        UPDATE threads SET updated_at = now()
        WHERE tenant = $1 AND thread_id = $2 AND EXISTS (SELECT 1 FROM added)
          AND updated_at < now() - interval '1 second'
    ), announced AS (
        INSERT INTO outbox (exchange_id, payload, traceparent)
        SELECT $4, $13, $14 WHERE EXISTS (SELECT 1 FROM added)
        ON CONFLICT (exchange_id) DO NOTHING
    )
    SELECT count(*) FROM added
"""


# A cached view's refresh: the thread's counters and the raw messages of transactions the
# view's last read could not see, in one round trip and one snapshot.
_CHANGES = f"""
    WITH thread AS (
        SELECT created_at AS thread_created_at, observations_version,
               {_RELATED}, {_UNSEEN}
        FROM threads WHERE tenant = $1 AND thread_id = $2
    )
    SELECT thread.*, fresh.* FROM thread LEFT JOIN LATERAL (
        SELECT {_MESSAGE_COLUMNS} FROM messages
        -- `txid >= $6` (the oldest unseen) bounds the index scan: the OR alone does
        -- not, and reads every message of the thread (1.7 ms at 10,000 instead of 0.03)
        WHERE tenant = $1 AND thread_id = $2 AND txid >= $6
          AND (txid >= $4 OR txid = ANY($5::bigint[])) AND NOT covered
    ) fresh ON true
"""


def _changes_arguments(tenant: str, thread_id: str, resource_id: str, unseen: Unseen) -> tuple[object, ...]:
    return tenant, thread_id, resource_id, unseen.xmax, unseen.xip, min([unseen.xmax, *unseen.xip])


# SQLSTATE classes of a refusal that is about the statements themselves: data exceptions,
# integrity constraints, a rolled-back transaction (deadlock). Not a server going away.
_REFUSALS = ("22", "23", "40")


class RecordRefused(Exception):
    """Postgres refused one statement of a batch (its data, a deadlock): nothing of the batch
    was stored. One at a time, the others would be."""


class ThreadRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def bind(self, tenant: str, thread_id: str, resource_id: str) -> str:
        """Create the thread if new; return the resource it is bound to (maybe another one).

        The no-op update makes the statement return the row even when a concurrent request
        created it a moment ago (a plain DO NOTHING would return nothing then).
        """
        return str(await self.db.pool.fetchval(
            """
            INSERT INTO threads (tenant, thread_id, resource_id) VALUES ($1, $2, $3)
            ON CONFLICT (tenant, thread_id) DO UPDATE SET resource_id = threads.resource_id
            RETURNING resource_id
            """,
            tenant, thread_id, resource_id,
        ))

    async def record(self, exchange: ExchangeCompleted, *, traceparent: str = "", begun_at: float | None = None) -> int:
        """Store an exchange's messages and its outbox row, durably, in one transaction;
        returns how many messages were new (0: a retry, or its thread was deleted after
        `begun_at`, when the request began: by default the exchange's `started_at`)."""
        if not exchange.messages:
            return 0
        return int(await self.db.pool.fetchval(_RECORD_EXCHANGE, *_record_arguments(exchange, traceparent, begun_at)))

    async def record_many(self, exchanges: Sequence[ExchangeCompleted], *,
                          traceparents: Sequence[str] | None = None, begun_at: float | None = None) -> list[int]:
        """`record` for several exchanges in one transaction and one round trip: all or
        nothing (`RecordRefused` when Postgres refused a statement, not when it could not be
        reached). A thread's exchanges are stored in the order given."""
        parents = traceparents or [""] * len(exchanges)
        todo = [(i, e) for i, e in enumerate(exchanges) if e.messages]
        # Threads in one order (that of deletes too), so that concurrent batches on other
        # edges never wait for each other in a cycle; a stable sort keeps a thread's order.
        todo.sort(key=lambda item: (item[1].tenant, item[1].thread_id))
        counts = [0] * len(exchanges)
        if todo:
            async with self.db.pool.acquire() as connection, connection.transaction():
                try:
                    rows = await connection.fetchmany(_RECORD_EXCHANGE,
                                                      [_record_arguments(e, parents[i], begun_at) for i, e in todo])
                except asyncpg.PostgresError as exc:
                    if exc.sqlstate[:2] in _REFUSALS:
                        raise RecordRefused(f"{type(exc).__name__}: {exc}") from exc
                    raise
            for (i, _), row in zip(todo, rows, strict=True):
                counts[i] = row[0]
        return counts

    async def exchanges(self, tenant: str, thread_id: str, exchange_ids: Sequence[str]) -> dict[str, list[MessageRecord]]:
        """The stored messages of these exchanges, oldest first (an exchange whose thread was
        deleted has none).

        The thread is checked and the order made here, not in SQL: given `thread_id` and an
        order by time, the planner may take the thread's index and filter the whole thread,
        which on statistics from before the thread grew it does (505 blocks and 2.1 ms at
        20,000 messages, against 4 blocks and 0.03 ms by the exchange index)."""
        rows = await self.db.pool.fetch(
            "SELECT exchange_id, thread_id, id, role, content, created_at, seq, name FROM messages "
            "WHERE tenant = $1 AND exchange_id = ANY($2::text[])",
            tenant, list(exchange_ids),
        )
        found: dict[str, list[MessageRecord]] = {}
        for r in sorted((r for r in rows if r["thread_id"] == thread_id), key=itemgetter("created_at", "seq")):
            found.setdefault(r["exchange_id"], []).append(
                MessageRecord(r["id"], r["role"], r["content"], r["created_at"].timestamp(), r["name"]))
        return found

    async def get(self, tenant: str, thread_id: str) -> ThreadSummary | None:
        row = await self.db.pool.fetchrow(_THREAD_SUMMARY + " WHERE t.tenant = $1 AND t.thread_id = $2", tenant, thread_id)
        return _summary(row) if row else None

    async def page(
        self, tenant: str, *, resource_id: str | None = None, matching: str | None = None, limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[ThreadSummary], int]:
        """A page of threads, newest first, and how many there are in all; `matching`: only
        those whose id or title contains it (ignoring case)."""
        async with self.db.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            rows = await conn.fetch(
                _THREAD_SUMMARY + " WHERE " + _THREADS_WHERE
                + " ORDER BY t.updated_at DESC, t.thread_id LIMIT $4 OFFSET $5",
                tenant, resource_id, matching, limit, offset,
            )
            total = await conn.fetchval("SELECT count(*) FROM threads t WHERE " + _THREADS_WHERE,
                                        tenant, resource_id, matching)
        return [_summary(r) for r in rows], total

    async def create(self, tenant: str, thread_id: str, resource_id: str, *, title: str | None,
                     metadata: dict[str, str]) -> ThreadSummary | None:
        """A new thread; None when one of that id exists already."""
        created = await self.db.pool.fetchval(
            "INSERT INTO threads (tenant, thread_id, resource_id, title, metadata) VALUES ($1, $2, $3, $4, $5::jsonb) "
            "ON CONFLICT DO NOTHING RETURNING true",
            tenant, thread_id, resource_id, title, msgspec.json.encode(metadata).decode())
        return await self.get(tenant, thread_id) if created else None

    async def describe(self, tenant: str, thread_id: str, *, title: str | msgspec.UnsetType | None = msgspec.UNSET,
                       metadata: dict[str, str] | msgspec.UnsetType = msgspec.UNSET) -> ThreadSummary | None:
        """Set what is given of a thread's title and metadata (metadata replaced whole); None
        when there is no such thread."""
        updated = await self.db.pool.fetchval(
            "UPDATE threads SET title = CASE WHEN $3 THEN $4 ELSE title END, "
            "metadata = CASE WHEN $5 THEN $6::jsonb ELSE metadata END, updated_at = now() "
            "WHERE tenant = $1 AND thread_id = $2 RETURNING true",
            tenant, thread_id, title is not msgspec.UNSET, None if title is msgspec.UNSET else title,
            metadata is not msgspec.UNSET, None if metadata is msgspec.UNSET else msgspec.json.encode(metadata).decode())
        return await self.get(tenant, thread_id) if updated else None

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

    async def message_page(self, tenant: str, thread_id: str, *, limit: int, offset: int,
                           newest_first: bool) -> tuple[list[StoredMessage], int]:
        """A page of the thread's messages in time order (or newest first), and how many it has."""
        order = "DESC" if newest_first else "ASC"
        async with self.db.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            rows = await conn.fetch(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE tenant = $1 AND thread_id = $2 "
                f"ORDER BY created_at {order}, id {order} LIMIT $3 OFFSET $4", tenant, thread_id, limit, offset)
            total = await conn.fetchval("SELECT count(*) FROM messages WHERE tenant = $1 AND thread_id = $2",
                                        tenant, thread_id)
        return [StoredMessage(**dict(r)) for r in rows], total

    async def selected_messages(self, tenant: str, thread_id: str, *, ids: Sequence[str] | None,
                                start: datetime | None, end: datetime | None, limit: int) -> list[StoredMessage]:
        """The thread's messages, in time order, of `ids` (all when None) sent in [start, end)."""
        rows = await self.db.pool.fetch(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE tenant = $1 AND thread_id = $2 "
            "AND ($3::text[] IS NULL OR id = ANY($3)) AND ($4::timestamptz IS NULL OR created_at >= $4) "
            "AND ($5::timestamptz IS NULL OR created_at < $5) ORDER BY created_at, id LIMIT $6",
            tenant, thread_id, ids, start, end, limit)
        return [StoredMessage(**dict(r)) for r in rows]

    async def message_ids(self, tenant: str, thread_id: str, ids: Sequence[str]) -> list[str]:
        """Those of `ids` that are the thread's messages."""
        rows = await self.db.pool.fetch(
            "SELECT id FROM messages WHERE tenant = $1 AND thread_id = $2 AND id = ANY($3::text[])",
            tenant, thread_id, list(ids))
        return [r["id"] for r in rows]

    async def delete_messages(self, tenant: str, thread_id: str, ids: Sequence[str]) -> MessagesDeleted | None:
        """Delete those of `ids` that are the thread's messages, and the observations that came
        only from messages no longer there (None: no such thread). The thread's lookups
        reload it (its observations version moves)."""
        async with self.db.pool.acquire() as conn, conn.transaction():
            # The observer's lock: a batch it is committing either lands before (and its
            # observations of these messages are deleted here) or sees them gone. Taken
            # before the thread's row, as the observer does (it holds this lock while its
            # writes lock the row): the other order deadlocks with a commit under way.
            await conn.execute("SELECT pg_advisory_xact_lock($1)", thread_lock_key(tenant, thread_id))
            if await conn.fetchval("SELECT true FROM threads WHERE tenant = $1 AND thread_id = $2 FOR UPDATE",
                                   tenant, thread_id) is None:
                return None
            deleted = await conn.fetch(
                "DELETE FROM messages WHERE tenant = $1 AND thread_id = $2 AND id = ANY($3::text[]) "
                "RETURNING id, created_at", tenant, thread_id, list(ids))
            gone = [r["id"] for r in deleted]
            orphaned = [r["id"] for r in await conn.fetch(
                "DELETE FROM observations o WHERE o.tenant = $1 AND o.thread_id = $2 AND o.source_message_ids && $3 "
                "AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.tenant = o.tenant AND m.id = ANY(o.source_message_ids)) "
                "RETURNING o.id", tenant, thread_id, gone)]
            if gone:
                await forget_threads(conn, tenant, [thread_id])
            await conn.execute(
                "UPDATE threads SET observations_version = observations_version + 1, updated_at = now() "
                "WHERE tenant = $1 AND thread_id = $2",
                tenant, thread_id)
        return MessagesDeleted(gone, orphaned, [(r["created_at"], r["id"]) for r in deleted])

    async def followers(self, tenant: str, thread_id: str,
                        keys: Sequence[tuple[datetime, str]]) -> list[tuple[StoredMessage, str | None]]:
        """Each message of the thread that is the first after one of `keys` (time, id: the
        order of a thread's messages, ties included), once each, with the text of the message
        it now follows (None: it opens the thread)."""
        rows = await self.db.pool.fetch(
            f"""
            SELECT DISTINCT ON (f.id) f.*, p.content AS follows
            FROM unnest($3::timestamptz[], $4::text[]) AS d(at, id)
            CROSS JOIN LATERAL (
                SELECT {_MESSAGE_COLUMNS} FROM messages
                WHERE tenant = $1 AND thread_id = $2 AND (created_at, id) > (d.at, d.id)
                ORDER BY created_at, id LIMIT 1
            ) f
            LEFT JOIN LATERAL (
                SELECT content FROM messages
                WHERE tenant = $1 AND thread_id = $2 AND (created_at, id) < (f.created_at, f.id)
                ORDER BY created_at DESC, id DESC LIMIT 1
            ) p ON true
            """,
            tenant, thread_id, [at for at, _ in keys], [i for _, i in keys])
        return [(StoredMessage(*(r[c] for c in _MESSAGE_FIELDS)), r["follows"]) for r in rows]

    async def previous_message(self, tenant: str, thread_id: str, before: datetime) -> StoredMessage | None:
        """The thread's newest message sent before `before` (what a new message follows)."""
        row = await self.db.pool.fetchrow(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE tenant = $1 AND thread_id = $2 AND created_at < $3 "
            "ORDER BY created_at DESC, id DESC LIMIT 1",
            tenant, thread_id, before,
        )
        return StoredMessage(**dict(row)) if row else None

    async def versions(self, tenant: str, thread_id: str, resource_id: str) -> tuple[ThreadVersions | None, Unseen]:
        """The thread's change counters, whether its resource has other threads, and what
        this read cannot see (reads after it, and `changes` from it, find the rest)."""
        row = await self.db.pool.fetchrow(
            f"""
            SELECT {_UNSEEN}, thread.* FROM (SELECT 1) AS one LEFT JOIN LATERAL (
                SELECT created_at, observations_version, {_RELATED}
                FROM threads WHERE tenant = $1 AND thread_id = $2
            ) AS thread ON true
            """,
            tenant, thread_id, resource_id,
        )
        unseen = Unseen(row["xmax"], row["xip"])
        if row["created_at"] is None:
            return None, unseen
        return ThreadVersions(row["created_at"], row["observations_version"], row["related"]), unseen

    async def changes(
        self, tenant: str, thread_id: str, resource_id: str, unseen: Unseen
    ) -> tuple[ThreadVersions | None, list[StoredMessage], Unseen]:
        """`versions`, the raw (uncovered) messages stored by transactions a previous read
        could not see (`unseen`: so exactly those it has not seen), and what this read cannot
        see, in one round trip and one snapshot. Stores into a thread may commit in any order;
        this finds each one once it has committed."""
        rows = await self.db.pool.fetch(_CHANGES, *_changes_arguments(tenant, thread_id, resource_id, unseen))
        if not rows:
            return None, [], unseen
        first = rows[0]
        versions = ThreadVersions(first["thread_created_at"], first["observations_version"], first["related"])
        fresh = [StoredMessage(*(r[c] for c in _MESSAGE_FIELDS)) for r in rows if r["id"] is not None]
        return versions, sorted(fresh, key=lambda m: (m.created_at, m.id)), Unseen(first["xmax"], first["xip"])

    async def delete(self, tenant: str, thread_id: str) -> bool:
        return bool(await self._delete_where("thread_id", tenant, thread_id))

    async def delete_resource(self, tenant: str, resource_id: str) -> list[str]:
        """Delete the resource's threads; returns their ids."""
        return await self._delete_where("resource_id", tenant, resource_id)

    async def _delete_where(self, column: str, tenant: str, value: str) -> list[str]:
        async with self.db.pool.acquire() as conn, conn.transaction():
            # Rows locked in one order (code points, so collation "C"): two deletes of
            # overlapping sets of threads cannot deadlock.
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
            await forget_threads(conn, tenant, [r["thread_id"] for r in deleted])
        return [r["thread_id"] for r in deleted]


def _record_arguments(exchange: ExchangeCompleted, traceparent: str, begun_at: float | None) -> tuple[object, ...]:
    """`_RECORD_EXCHANGE`'s parameters: the messages go as one array per column."""
    messages = exchange.messages
    rows = [
        (m.id, m.role, m.name, m.content, count_tokens(m.content), datetime.fromtimestamp(m.created_at, UTC),
         exchange.interrupted and m.role == "assistant")
        for m in messages
    ]
    return (exchange.tenant, exchange.thread_id, exchange.resource_id, exchange.exchange_id, *map(list, zip(*rows)),
            datetime.fromtimestamp(exchange.started_at if begun_at is None else begun_at, UTC),
            exchange_encoder.encode(exchange.recorded()), traceparent)
