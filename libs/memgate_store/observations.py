"""Observations, the observer's idempotency markers, activation, reflection generations,
observer failures and per-tenant memory limits.

Lifecycle of an observation: written *buffered* (inactive) by the Observer; *active* once
activation covers one of its source messages (it then replaces them in the injected
context); *superseded* when the Reflector rewrites the active set into a new generation
(kept for audit, never injected again).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from datetime import date, datetime, time

import asyncpg
import msgspec

from memgate_store.database import Database

RAW_OUTPUT_LIMIT = 4000  # characters of a failed model answer kept for the dashboard
ERROR_LIMIT = 1000
ACTIVATION_MESSAGES = 2000  # messages one activation covers, about (see `activate`)


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
    source_message_ids: list[str]  # provenance: the messages it came from
    active: bool = False
    generation: int = 0  # 0: written by the Observer; n: written by the n-th reflection
    created_at: datetime | None = None
    observed_time: time | None = None  # time of day (UTC) it refers to, when known
    observer: str | None = None  # which observer or reflector wrote it
    derived_from: list[str] = []  # reflected: the ids of the observations it replaced
    superseded_at: datetime | None = None  # replaced by a newer generation (audit only)


class ObserverFailure(msgspec.Struct, frozen=True):
    id: int
    tenant: str
    thread_id: str
    kind: str  # 'observer' | 'reflector'
    exchange_ids: list[str]
    observer: str
    error: str
    raw_output: str | None
    observations_version: int | None
    at: datetime


class MemoryLimits(msgspec.Struct, frozen=True):
    """The token limits that apply to one tenant (its overrides, else the process defaults)."""

    activation_tokens: int
    observation_budget_tokens: int


class ObservationRecord(msgspec.Struct, frozen=True):
    """What `record` reads of a thread's observational memory."""

    thread_activation_tokens: int | None  # its own thresholds (None: the tenant's or the defaults)
    thread_observation_budget_tokens: int | None
    generation: int  # of its current observations
    active_tokens: int
    buffered_observations: int  # written, not yet activated
    unobserved_message_tokens: int  # raw messages no active observation covers yet
    pending_exchanges: int  # recorded, not yet observed
    current_task: str | None


class Generation(msgspec.Struct, frozen=True):
    generation: int
    observation_count: int
    tokens: int
    active_tokens: int
    created_at: datetime
    superseded_at: datetime | None  # when reflection replaced it (None: current)
    current: bool


class ThreadMemory(msgspec.Struct, frozen=True):
    current_task: str | None
    current_task_updated_at: datetime | None
    observations_version: int
    title: str | None = None


class ReflectionState(msgspec.Struct, frozen=True):
    active_tokens: int  # tokens of the injected (active, current) observations
    observations_version: int
    failed_version: int | None  # observations_version of the latest failed reflection
    failed_at: datetime | None


_COLUMNS = (
    "id, tenant, thread_id, resource_id, exchange_id, text, priority, observed_on, tokens, "
    "source_message_ids, active, generation, created_at, observed_time, observer, derived_from, superseded_at"
)
_ORDER = "ORDER BY observed_on, created_at, id"
_WORDS = re.compile(r"\w+")


def text_key(text: str) -> str:
    """The dedupe key of an observation: its words, case-folded, hashed."""
    return hashlib.md5(" ".join(_WORDS.findall(text.casefold())).encode()).hexdigest()


def thread_lock_key(tenant: str, thread_id: str) -> int:
    """The advisory lock that serialises writers of one thread's memory (observer, reflector,
    message deletes)."""
    digest = hashlib.blake2b(f"{tenant}\x1f{thread_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class ObservationRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    # ------------------------------------------------------------------ observing

    async def observed(self, tenant: str, exchange_ids: Sequence[str], *,
                       conn: asyncpg.Connection | None = None) -> set[str]:
        """Which of these exchanges the observer already finished (observed or failed)."""
        rows = await (conn or self.db.pool).fetch(
            "SELECT exchange_id FROM observed_exchanges WHERE tenant = $1 AND exchange_id = ANY($2::text[])",
            tenant, list(exchange_ids),
        )
        return {r["exchange_id"] for r in rows}

    async def lock_thread(self, conn: asyncpg.Connection, tenant: str, thread_id: str) -> None:
        """Serialise writers of one thread's memory (across processes) until the transaction
        ends; and hold the thread's row, so that a delete of the thread waits for the
        transaction (whose vectors it then deletes after it) instead of slipping in between.
        In this order: a delete of messages takes the same two locks in it."""
        await conn.execute("SELECT pg_advisory_xact_lock($1)", thread_lock_key(tenant, thread_id))
        await conn.execute("SELECT 1 FROM threads WHERE tenant = $1 AND thread_id = $2 FOR KEY SHARE", tenant, thread_id)

    async def alive_messages(self, conn: asyncpg.Connection, tenant: str, ids: Sequence[str]) -> set[str]:
        """Which of these messages still exist (in the caller's transaction, under lock_thread:
        a delete of messages takes the same lock)."""
        rows = await conn.fetch("SELECT id FROM messages WHERE tenant = $1 AND id = ANY($2::text[])", tenant, list(ids))
        return {r["id"] for r in rows}

    async def record_batch(
        self, conn: asyncpg.Connection, tenant: str, thread_id: str, exchange_ids: Sequence[str],
        observer: str, observations: Sequence[Observation], *, failed: bool = False,
    ) -> bool:
        """Mark exchanges observed and write their observations, in the caller's transaction.

        Returns False (writing nothing) when any of them was already marked: another
        delivery got there first and the caller should roll back.
        """
        marked = await conn.fetch(
            "INSERT INTO observed_exchanges (tenant, exchange_id, thread_id, observer, failed) "
            "SELECT $1, e, $3, $4, $5 FROM unnest($2::text[]) AS e ON CONFLICT DO NOTHING RETURNING exchange_id",
            tenant, list(exchange_ids), thread_id, observer, failed,
        )
        if len(marked) != len(set(exchange_ids)):
            return False
        await self._insert(conn, observations, observer=observer, active=False)
        return True

    async def _insert(self, conn: asyncpg.Connection, observations: Sequence[Observation], *, observer: str,
                      active: bool) -> None:
        if not observations:
            return
        await conn.executemany(
            "INSERT INTO observations (id, tenant, thread_id, resource_id, exchange_id, text, priority, observed_on, "
            "tokens, source_message_ids, observed_time, text_key, observer, derived_from, generation, active, created_at) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, clock_timestamp()) "
            "ON CONFLICT (id) DO NOTHING",  # clock_timestamp(): a batch keeps its order
            [
                (o.id, o.tenant, o.thread_id, o.resource_id, o.exchange_id, o.text, o.priority, o.observed_on,
                 o.tokens, o.source_message_ids, o.observed_time, text_key(o.text), observer, o.derived_from,
                 o.generation, active)
                for o in observations
            ],
        )

    async def known_text_keys(self, tenant: str, thread_id: str, keys: Sequence[str]) -> set[str]:
        """Which dedupe keys the thread already has (any generation: a fact known once is known)."""
        rows = await self.db.pool.fetch(
            "SELECT DISTINCT text_key FROM observations WHERE tenant = $1 AND thread_id = $2 AND text_key = ANY($3::text[])",
            tenant, thread_id, list(keys),
        )
        return {r["text_key"] for r in rows}

    async def set_current_task(self, conn: asyncpg.Connection, tenant: str, thread_id: str, task: str) -> None:
        await conn.execute(
            "UPDATE threads SET current_task = $3, current_task_updated_at = now() WHERE tenant = $1 AND thread_id = $2",
            tenant, thread_id, task,
        )

    async def thread_memory(self, tenant: str, thread_id: str) -> ThreadMemory | None:
        row = await self.db.pool.fetchrow(
            "SELECT current_task, current_task_updated_at, observations_version, title FROM threads "
            "WHERE tenant = $1 AND thread_id = $2",
            tenant, thread_id,
        )
        return ThreadMemory(**dict(row)) if row else None

    # ------------------------------------------------------------------ reading

    async def for_thread(self, tenant: str, thread_id: str, *, active_only: bool = False) -> list[Observation]:
        """The thread's observations in time order.

        active_only: what the context service injects, i.e. active and of the current
        generation. Otherwise every observation, buffered and superseded ones included (audit).
        """
        rows = await self.db.pool.fetch(
            f"SELECT {_COLUMNS} FROM observations WHERE tenant = $1 AND thread_id = $2 "
            f"AND (NOT $3 OR (active AND superseded_at IS NULL)) {_ORDER}",
            tenant, thread_id, active_only,
        )
        return [Observation(**dict(r)) for r in rows]

    async def current(self, tenant: str, thread_id: str, *, conn: asyncpg.Connection | None = None) -> list[Observation]:
        """Every observation not superseded: the active ones and those still buffered."""
        rows = await (conn or self.db.pool).fetch(
            f"SELECT {_COLUMNS} FROM observations WHERE tenant = $1 AND thread_id = $2 AND superseded_at IS NULL {_ORDER}",
            tenant, thread_id,
        )
        return [Observation(**dict(r)) for r in rows]

    async def recent(self, tenant: str, thread_id: str, *, limit: int = 200) -> list[Observation]:
        """The newest `limit` current observations, oldest first (what the Observer is shown)."""
        rows = await self.db.pool.fetch(
            f"SELECT * FROM (SELECT {_COLUMNS} FROM observations WHERE tenant = $1 AND thread_id = $2 "
            "AND superseded_at IS NULL ORDER BY created_at DESC, observed_on DESC, id DESC LIMIT $3) newest "
            + _ORDER,
            tenant, thread_id, limit,
        )
        return [Observation(**dict(r)) for r in rows]

    async def current_for_resource(self, tenant: str, resource_id: str, *, limit: int) -> list[Observation]:
        """The resource's newest `limit` current observations over all its threads, newest
        first: what recall can draw on (the index holds exactly the current ones)."""
        rows = await self.db.pool.fetch(
            f"SELECT {_COLUMNS} FROM observations WHERE tenant = $1 AND resource_id = $2 AND superseded_at IS NULL "
            "ORDER BY observed_on DESC, created_at DESC, id DESC LIMIT $3",
            tenant, resource_id, limit,
        )
        return [Observation(**dict(r)) for r in rows]

    async def count(self, tenant: str, *, resource_id: str | None = None) -> int:
        return int(await self.db.pool.fetchval(
            "SELECT count(*) FROM observations WHERE tenant = $1 AND ($2::text IS NULL OR resource_id = $2)",
            tenant, resource_id,
        ))

    # ------------------------------------------------------------------ activation

    async def activate(self, conn: asyncpg.Connection, tenant: str, thread_id: str, *, threshold: int, keep_raw: int) -> int:
        """Let observations replace raw messages once the raw tail grows past `threshold` tokens.

        Whole exchanges are covered, oldest first, while at least `keep_raw` tokens stay raw;
        covering stops at the first exchange not observed yet. An exchange whose observation
        failed is never covered (nothing would replace it) and does not stop the others.
        Observations with a covered source become active. Returns the number of messages covered.

        One call covers about `ACTIVATION_MESSAGES` messages at most (always one whole
        exchange): a tail of many tiny messages is covered over the thread's next batches
        (those that find it still above the threshold), so no batch holds a core for long. On
        a thread of two-word messages, covering 26,000 tokens at once took one 221 ms
        statement. (Choosing what to cover still reads the whole tail, which the threshold
        bounds: 20 ms there. Reading only its oldest messages by the tail's index, joined to
        their exchanges, took the planner to a plan of seconds.)
        """
        raw = await conn.fetchval(
            "SELECT coalesce(sum(tokens), 0) FROM messages WHERE tenant = $1 AND thread_id = $2 AND NOT covered",
            tenant, thread_id,
        )
        if raw <= threshold:  # the common case: one aggregate, no rows fetched
            return 0
        exchanges = await conn.fetch(
            """
            WITH oldest AS (
                SELECT exchange_id, min(created_at) AS first_at, min(id) AS first_id, sum(tokens) AS tokens,
                       array_agg(id) AS ids
                FROM messages WHERE tenant = $1 AND thread_id = $2 AND NOT covered
                GROUP BY exchange_id ORDER BY first_at, first_id LIMIT $3
            )
            SELECT o.ids, o.tokens, e.exchange_id IS NOT NULL AS observed, coalesce(e.failed, false) AS failed
            FROM oldest o LEFT JOIN observed_exchanges e ON e.tenant = $1 AND e.exchange_id = o.exchange_id
            ORDER BY o.first_at, o.first_id
            """,
            tenant, thread_id, ACTIVATION_MESSAGES,  # (an exchange has one message at least)
        )
        cover: list[str] = []
        for exchange in exchanges:
            if len(cover) >= ACTIVATION_MESSAGES or not exchange["observed"]:
                break
            if exchange["failed"]:  # (before the tail's check: it stays raw, so it costs the tail nothing)
                continue
            if raw - exchange["tokens"] < keep_raw:
                break
            cover.extend(exchange["ids"])
            raw -= exchange["tokens"]
        if not cover:
            return 0
        await conn.execute(
            "UPDATE messages SET covered = true WHERE tenant = $1 AND id = ANY($2::text[])", tenant, cover
        )
        await conn.execute(
            """
            UPDATE observations o SET active = true
            WHERE o.tenant = $1 AND o.thread_id = $2 AND NOT o.active AND o.superseded_at IS NULL AND EXISTS (
                SELECT 1 FROM messages m WHERE m.tenant = o.tenant AND m.id = ANY(o.source_message_ids) AND m.covered
            )
            """,
            tenant, thread_id,
        )
        # New observations start inactive and do not change the injected context; activation
        # does, so it bumps the version the context service checks.
        await self._bump(conn, tenant, thread_id)
        return len(cover)

    async def _bump(self, conn: asyncpg.Connection, tenant: str, thread_id: str) -> None:
        await conn.execute(
            "UPDATE threads SET observations_version = observations_version + 1 WHERE tenant = $1 AND thread_id = $2",
            tenant, thread_id,
        )

    # ------------------------------------------------------------------ reflection

    async def reflection_state(self, tenant: str, thread_id: str) -> ReflectionState | None:
        row = await self.db.pool.fetchrow(
            """
            SELECT t.observations_version,
                   (SELECT coalesce(sum(o.tokens), 0) FROM observations o
                    WHERE o.tenant = t.tenant AND o.thread_id = t.thread_id AND o.active AND o.superseded_at IS NULL
                   ) AS active_tokens,
                   f.observations_version AS failed_version, f.at AS failed_at
            FROM threads t
            LEFT JOIN LATERAL (
                SELECT observations_version, at FROM observer_failures f
                WHERE f.tenant = t.tenant AND f.thread_id = t.thread_id AND f.kind = 'reflector'
                ORDER BY at DESC, id DESC LIMIT 1
            ) f ON true
            WHERE t.tenant = $1 AND t.thread_id = $2
            """,
            tenant, thread_id,
        )
        return ReflectionState(**dict(row)) if row else None

    async def replace_generation(
        self, conn: asyncpg.Connection, tenant: str, thread_id: str, replaced: Sequence[str],
        observations: Sequence[Observation], *, reflector: str,
    ) -> bool:
        """Swap the active observations `replaced` for a reflected generation, in the caller's transaction.

        The old ones stay, superseded (audit); the new ones are active at once. Returns False,
        changing nothing, if any of `replaced` is no longer active and current (another
        reflection won): the caller rolls back.
        """
        ids = sorted(set(replaced))
        still = await conn.fetchval(
            "SELECT count(*) FROM observations WHERE tenant = $1 AND thread_id = $2 AND id = ANY($3::text[]) "
            "AND active AND superseded_at IS NULL",
            tenant, thread_id, ids,
        )
        if still != len(ids):
            return False
        await conn.execute(
            "UPDATE observations SET superseded_at = now() WHERE tenant = $1 AND thread_id = $2 AND id = ANY($3::text[])",
            tenant, thread_id, ids,
        )
        await self._insert(conn, observations, observer=reflector, active=True)
        await self._bump(conn, tenant, thread_id)
        return True

    # ------------------------------------------------------------------ failures

    async def record_failure(
        self, conn: asyncpg.Connection | None, tenant: str, thread_id: str, *, kind: str, observer: str, error: str,
        raw_output: str | None = None, exchange_ids: Sequence[str] = (), observations_version: int | None = None,
    ) -> None:
        await (conn or self.db.pool).execute(
            "INSERT INTO observer_failures (tenant, thread_id, kind, exchange_ids, observer, error, raw_output, "
            "observations_version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            tenant, thread_id, kind, list(exchange_ids), observer, error[:ERROR_LIMIT],
            None if raw_output is None else raw_output[:RAW_OUTPUT_LIMIT], observations_version,
        )

    async def failures(self, tenant: str, thread_id: str, *, limit: int = 20) -> list[ObserverFailure]:
        """The thread's newest observer and reflector failures, newest first."""
        rows = await self.db.pool.fetch(
            "SELECT id, tenant, thread_id, kind, exchange_ids, observer, error, raw_output, observations_version, at "
            "FROM observer_failures WHERE tenant = $1 AND thread_id = $2 ORDER BY at DESC, id DESC LIMIT $3",
            tenant, thread_id, limit,
        )
        return [ObserverFailure(**dict(r)) for r in rows]

    # ------------------------------------------------------------------ per-tenant limits

    async def limits(self, tenant: str, thread_id: str, *, activation_tokens: int,
                     observation_budget_tokens: int) -> MemoryLimits:
        """The thread's own thresholds, else its tenant's (tenant_settings), else the given defaults."""
        row = await self.db.pool.fetchrow(
            "SELECT coalesce(t.activation_tokens, s.activation_tokens) AS activation_tokens, "
            "coalesce(t.observation_budget_tokens, s.observation_budget_tokens) AS observation_budget_tokens "
            "FROM (SELECT 1) AS one LEFT JOIN tenant_settings s ON s.tenant = $1 "
            "LEFT JOIN threads t ON t.tenant = $1 AND t.thread_id = $2", tenant, thread_id,
        )
        return MemoryLimits(row["activation_tokens"] or activation_tokens,
                            row["observation_budget_tokens"] or observation_budget_tokens)

    async def set_title(self, tenant: str, thread_id: str, title: str) -> bool:
        """Give an untitled thread its title (one an application set is never replaced)."""
        return bool(await self.db.pool.fetchval(
            "UPDATE threads SET title = $3 WHERE tenant = $1 AND thread_id = $2 AND title IS NULL RETURNING true",
            tenant, thread_id, title.replace("\x00", "")))

    async def set_thread_limits(self, tenant: str, thread_id: str, *,
                                activation_tokens: int | msgspec.UnsetType | None = msgspec.UNSET,
                                observation_budget_tokens: int | msgspec.UnsetType | None = msgspec.UNSET) -> bool:
        """Set (or with None, clear) a thread's own thresholds; what is left unset stays.
        False when there is no such thread."""
        return bool(await self.db.pool.fetchval(
            "UPDATE threads SET activation_tokens = CASE WHEN $3 THEN $4 ELSE activation_tokens END, "
            "observation_budget_tokens = CASE WHEN $5 THEN $6 ELSE observation_budget_tokens END "
            "WHERE tenant = $1 AND thread_id = $2 RETURNING true",
            tenant, thread_id, activation_tokens is not msgspec.UNSET, _set(activation_tokens),
            observation_budget_tokens is not msgspec.UNSET, _set(observation_budget_tokens)))

    async def record(self, tenant: str, thread_id: str) -> ObservationRecord | None:
        """The thread's observational-memory state in one read (None: no such thread)."""
        row = await self.db.pool.fetchrow(
            """
            SELECT t.activation_tokens AS thread_activation_tokens,
                   t.observation_budget_tokens AS thread_observation_budget_tokens,
                   coalesce((SELECT max(generation) FROM observations o WHERE o.tenant = t.tenant
                             AND o.thread_id = t.thread_id AND o.superseded_at IS NULL), 0) AS generation,
                   coalesce((SELECT sum(tokens) FROM observations o WHERE o.tenant = t.tenant
                             AND o.thread_id = t.thread_id AND o.active AND o.superseded_at IS NULL), 0) AS active_tokens,
                   (SELECT count(*) FROM observations o WHERE o.tenant = t.tenant AND o.thread_id = t.thread_id
                    AND NOT o.active AND o.superseded_at IS NULL) AS buffered_observations,
                   coalesce((SELECT sum(tokens) FROM messages m WHERE m.tenant = t.tenant
                             AND m.thread_id = t.thread_id AND NOT m.covered), 0) AS unobserved_message_tokens,
                   (SELECT count(DISTINCT exchange_id) FROM messages m WHERE m.tenant = t.tenant
                    AND m.thread_id = t.thread_id AND NOT EXISTS (SELECT 1 FROM observed_exchanges x
                        WHERE x.tenant = m.tenant AND x.exchange_id = m.exchange_id)) AS pending_exchanges,
                   t.current_task
            FROM threads t WHERE t.tenant = $1 AND t.thread_id = $2
            """, tenant, thread_id)
        return ObservationRecord(**dict(row)) if row else None

    async def generations(self, tenant: str, thread_id: str) -> list[Generation]:
        """The thread's generations of observations, newest first (0: the Observer's)."""
        rows = await self.db.pool.fetch(
            "SELECT generation, count(*) AS observation_count, sum(tokens) AS tokens, "
            "sum(tokens) FILTER (WHERE active) AS active_tokens, min(created_at) AS created_at, "
            "max(superseded_at) AS superseded_at, bool_or(superseded_at IS NULL) AS current "
            "FROM observations WHERE tenant = $1 AND thread_id = $2 GROUP BY generation ORDER BY generation DESC",
            tenant, thread_id)
        return [Generation(**{**dict(r), "active_tokens": r["active_tokens"] or 0}) for r in rows]

    async def set_limits(self, tenant: str, *, activation_tokens: int | None = None,
                         observation_budget_tokens: int | None = None) -> None:
        """Set (or with None, clear) a tenant's overrides."""
        await self.db.pool.execute(
            "INSERT INTO tenant_settings (tenant, activation_tokens, observation_budget_tokens) VALUES ($1, $2, $3) "
            "ON CONFLICT (tenant) DO UPDATE SET activation_tokens = $2, observation_budget_tokens = $3, updated_at = now()",
            tenant, activation_tokens, observation_budget_tokens,
        )


def _set(value: int | msgspec.UnsetType | None) -> int | None:
    return None if isinstance(value, msgspec.UnsetType) or value is None else value
