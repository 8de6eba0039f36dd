"""Dashboard sign-in sessions: a random token in an HttpOnly cookie, stored hashed."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from memgate_store.database import Database

SESSION_TTL = timedelta(hours=12)


class SessionRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def open(self, tenant: str) -> str:
        token = secrets.token_urlsafe(32)
        await self.db.pool.execute(
            "INSERT INTO dashboard_sessions (token_hash, tenant, expires_at) VALUES ($1, $2, now() + $3)",
            hashlib.sha256(token.encode()).digest(), tenant, SESSION_TTL,
        )
        return token

    async def tenant_for(self, token: str) -> str | None:
        return await self.db.pool.fetchval(
            "SELECT tenant FROM dashboard_sessions WHERE token_hash = $1 AND expires_at > now()",
            hashlib.sha256(token.encode()).digest(),
        )

    async def close(self, token: str) -> None:
        await self.db.pool.execute(
            "DELETE FROM dashboard_sessions WHERE token_hash = $1", hashlib.sha256(token.encode()).digest()
        )
