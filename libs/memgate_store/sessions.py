"""Dashboard sign-in sessions: a random token in an HttpOnly cookie, stored hashed.

A session lives as long as the key it was opened with: revoking the key ends it.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from typing import cast

from memgate_store.database import Database

SESSION_TTL = timedelta(hours=12)


def _hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class SessionRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def open(self, tenant: str, key_id: str | None) -> str:
        token = secrets.token_urlsafe(32)
        async with self.db.pool.acquire() as conn:
            await conn.execute("DELETE FROM dashboard_sessions WHERE expires_at < now()")
            await conn.execute(
                "INSERT INTO dashboard_sessions (token_hash, tenant, key_id, expires_at) VALUES ($1, $2, $3, now() + $4)",
                _hash(token), tenant, key_id, SESSION_TTL,
            )
        return token

    async def tenant_for(self, token: str) -> str | None:
        return cast("str | None", await self.db.pool.fetchval(
            """
            SELECT s.tenant FROM dashboard_sessions s
            JOIN api_keys k ON k.id = s.key_id AND k.revoked_at IS NULL
            WHERE s.token_hash = $1 AND s.expires_at > now()
            """,
            _hash(token),
        ))

    async def key_for(self, token: str) -> str | None:
        """The id of the key the session was opened with (while the session lasts)."""
        return cast("str | None", await self.db.pool.fetchval(
            "SELECT key_id FROM dashboard_sessions WHERE token_hash = $1 AND expires_at > now()", _hash(token)))

    async def close(self, token: str) -> None:
        await self.db.pool.execute("DELETE FROM dashboard_sessions WHERE token_hash = $1", _hash(token))
