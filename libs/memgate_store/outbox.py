"""The outbox: events written with the data they announce, until a relay has published them.

Rows are written by `ThreadRepository.record` (in the transaction that stores an
exchange's messages). A relay `claim`s a batch (other relays skip it until the claim
lapses), publishes it, and `delete`s what the bus acknowledged; what it could not publish
it `release`s for a later try.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from memgate_store.database import Database


class OutboxRow(msgspec.Struct, frozen=True):
    id: int
    exchange_id: str
    payload: bytes
    traceparent: str


# The relay's own writes need not wait for the WAL flush (their statement's transaction
# only): a claim or delete lost in a crash only has a row published again, which JetStream
# deduplicates. Fewer flushes left for the commits that must wait for theirs.
_NO_FLUSH = "(SELECT set_config('synchronous_commit', 'off', true))"


class OutboxRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def claim(self, *, limit: int = 256, hold_seconds: float = 30.0) -> list[OutboxRow]:
        """The oldest unclaimed rows, claimed for `hold_seconds` (a relay that dies holding
        them only delays them that long)."""
        rows = await self.db.pool.fetch(
            f"""
            UPDATE outbox SET claimed_until = now() + make_interval(secs => $2)
            WHERE id IN (SELECT id FROM outbox WHERE claimed_until < now()
                         ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)
              AND {_NO_FLUSH} = 'off'
            RETURNING id, exchange_id, payload, traceparent
            """,
            limit, hold_seconds,
        )
        return sorted((OutboxRow(r["id"], r["exchange_id"], bytes(r["payload"]), r["traceparent"]) for r in rows),
                      key=lambda row: row.id)

    async def waiting(self) -> int:
        """Rows not yet published (claimed or not): a gauge's reading, cheap while the relay keeps up."""
        return int(await self.db.pool.fetchval("SELECT count(*) FROM outbox"))

    async def delete(self, ids: Sequence[int]) -> None:
        """Published: the rows are done."""
        if ids:
            await self.db.pool.execute(f"DELETE FROM outbox WHERE id = ANY($1::bigint[]) AND {_NO_FLUSH} = 'off'",
                                       list(ids))

    async def release(self, ids: Sequence[int], *, after_seconds: float) -> None:
        """Not published: claimable again after `after_seconds`."""
        if ids:
            await self.db.pool.execute(
                "UPDATE outbox SET claimed_until = now() + make_interval(secs => $2) WHERE id = ANY($1::bigint[])",
                list(ids), after_seconds)
