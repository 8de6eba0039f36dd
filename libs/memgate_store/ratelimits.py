"""The rate limiter's shared state: one GCRA bucket per key, updated atomically in Postgres.

Every edge replica runs the same single statement, so a key's limit holds across
replicas. The arithmetic mirrors `memgate_edge.ratelimit.gcra` (unit-tested there), in
integer microseconds so that comparisons are exact:

    now   = max(now, the bucket's last now) -- a bucket's clock never runs backwards
    tat   = max(stored tat, now)            -- theoretical arrival time
    allow = tat - now <= tolerance          -- tolerance = (burst - 1) * interval
    store tat + interval if allowed, else leave it

A check may take several cells at once (as many as it asks for and the bucket holds):
an edge leases them and spends them without asking again (`memgate_edge.ratelimit`).

The clock is the database's (one clock for all replicas) unless the caller passes `now`
(tests inject a clock). The statement reads the clock before it waits for the bucket's
row lock, so a request that queued behind a later one would otherwise be judged at an
earlier time than the bucket has already seen (one less remaining, or a denial a few
microseconds early). The table is UNLOGGED: losing it only resets the limits.
"""

from __future__ import annotations

from memgate_store.database import Database

# $3 interval, $4 tolerance, $5 cells wanted. available: the cells the bucket holds now
# (0 when tat - now > tolerance); granted: as many of those as wanted.
_TAKE = """
INSERT INTO rate_limit_buckets AS b (bucket, tat, allowed, seen_at, granted)
SELECT $1, n.now + least($5::integer, $4::bigint / $3::bigint + 1) * $3, true, n.now, least($5, $4 / $3 + 1)
FROM (SELECT coalesce($2::bigint, (extract(epoch FROM clock_timestamp()) * 1000000)::bigint) AS now) AS n
ON CONFLICT (bucket) DO UPDATE SET  -- now = greatest(b.seen_at, excluded.seen_at), T = greatest(b.tat, now)
    granted = CASE WHEN greatest(b.tat, b.seen_at, excluded.seen_at) - greatest(b.seen_at, excluded.seen_at) <= $4
                   THEN least($5, (greatest(b.seen_at, excluded.seen_at) + $4
                                   - greatest(b.tat, b.seen_at, excluded.seen_at)) / $3 + 1)
                   ELSE 0 END,
    allowed = greatest(b.tat, b.seen_at, excluded.seen_at) - greatest(b.seen_at, excluded.seen_at) <= $4,
    tat = CASE WHEN greatest(b.tat, b.seen_at, excluded.seen_at) - greatest(b.seen_at, excluded.seen_at) <= $4
               THEN greatest(b.tat, b.seen_at, excluded.seen_at)
                    + $3 * least($5, (greatest(b.seen_at, excluded.seen_at) + $4
                                      - greatest(b.tat, b.seen_at, excluded.seen_at)) / $3 + 1)
               ELSE b.tat END,
    seen_at = greatest(b.seen_at, excluded.seen_at)
RETURNING granted, tat, seen_at
"""


class RateLimitRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def take(self, bucket: str, *, interval_us: int, tolerance_us: int, now_us: int | None = None,
                   cells: int = 1) -> tuple[int, int, int]:
        """Try to take up to `cells` requests from `bucket`: (how many it got, tat after the
        check, now), times in µs."""
        # A bucket's first request always conforms (burst >= 1, so tolerance >= 0).
        row = await self.db.pool.fetchrow(_TAKE, bucket, now_us, interval_us, tolerance_us, cells)
        return row["granted"], row["tat"], row["seen_at"]

    async def reset(self, bucket: str) -> None:
        await self.db.pool.execute("DELETE FROM rate_limit_buckets WHERE bucket = $1", bucket)
