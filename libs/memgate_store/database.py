"""The Postgres pool and the migration runner."""

from __future__ import annotations

import importlib.resources
import logging

import asyncpg

log = logging.getLogger("memgate.store")

# Any constant works: it serialises concurrent `migrate` runs (several pods starting at once).
_MIGRATION_LOCK = 0x6D656D67
# What Postgres answers while it is going away or full (shutdown, restart, no slots).
_UNAVAILABLE = (
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.TooManyConnectionsError,
)


def unreachable(exc: BaseException) -> bool:
    """Whether `exc` says Postgres cannot be reached just now (a retry later may succeed):
    one of its connection errors, or an OSError (refused, reset, no socket file) raised
    inside asyncpg, not any OSError (a timeout or a missing file elsewhere is a bug to show)."""
    if isinstance(exc, _UNAVAILABLE):
        return True
    if not isinstance(exc, OSError) or isinstance(exc, TimeoutError):
        return False
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_globals.get("__name__", "").startswith("asyncpg"):
            return True
        tb = tb.tb_next
    return False


class Database:
    """Owns one asyncpg pool per process."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @classmethod
    async def connect(cls, url: str, *, min_size: int = 4, max_size: int = 10) -> Database:
        # Connections are opened at start: one opened on demand costs 10-30 ms to the query that waits.
        pool = await asyncpg.create_pool(url, min_size=min(min_size, max_size), max_size=max_size, command_timeout=30,
                                         reset=_keep_session)
        assert pool is not None
        return cls(pool)

    async def close(self) -> None:
        await self.pool.close()

    async def ready(self) -> bool:
        try:
            async with self.pool.acquire(timeout=1) as conn:
                return bool(await conn.fetchval("SELECT 1") == 1)
        except Exception:
            return False


async def _keep_session(conn: asyncpg.Connection) -> None:
    # asyncpg's default reset (RESET ALL, UNLISTEN, advisory unlock...) costs a round trip on
    # every release. Pool connections never change session state, so there is nothing to undo.
    return None


def _migrations() -> list[tuple[int, str, str]]:
    folder = importlib.resources.files("memgate_store") / "migrations"
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            found.append((version, entry.name, entry.read_text()))
    return sorted(found)


async def migrate(url: str) -> list[str]:
    """Apply pending migrations, each in its own transaction; returns the names applied."""
    conn = await asyncpg.connect(url)
    applied: list[str] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for version, name, sql in _migrations():
            if version in done:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name)
            log.info("applied migration %s", name)
            applied.append(name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
        await conn.close()
    return applied
