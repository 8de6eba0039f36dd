"""API keys: created once, shown once, stored as sha256 hashes."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

import msgspec

from memgate_core.ids import new_id
from memgate_store.database import Database

KEY_PREFIX = "msk_"


class ApiKey(msgspec.Struct, frozen=True):
    id: str
    tenant: str
    prefix: str
    name: str | None
    created_at: datetime
    revoked_at: datetime | None = None


def hash_key(plaintext: str) -> bytes:
    # Keys carry 256 random bits, so a plain digest cannot be brute-forced; no salt is needed.
    return hashlib.sha256(plaintext.encode()).digest()


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


class KeyRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(self, tenant: str, name: str | None = None) -> tuple[ApiKey, str]:
        plaintext = generate_key()
        return await self.insert(plaintext, tenant, name), plaintext

    async def insert(self, plaintext: str, tenant: str, name: str | None = None) -> ApiKey:
        """Store a given key (idempotent: an existing key keeps its tenant)."""
        row = await self.db.pool.fetchrow(
            """
            INSERT INTO api_keys (id, tenant, key_hash, prefix, name) VALUES ($1, $2, $3, $4, $5)
            ON CONFLICT (key_hash) DO UPDATE SET revoked_at = NULL
            RETURNING id, tenant, prefix, name, created_at, revoked_at
            """,
            new_id("key"), tenant, hash_key(plaintext), plaintext[:10], name,
        )
        return ApiKey(**dict(row))

    async def tenant_for(self, plaintext: str) -> str | None:
        return await self.db.pool.fetchval(
            "SELECT tenant FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL", hash_key(plaintext)
        )

    async def count(self) -> int:
        return await self.db.pool.fetchval("SELECT count(*) FROM api_keys WHERE revoked_at IS NULL")

    async def list(self, tenant: str | None = None) -> list[ApiKey]:
        rows = await self.db.pool.fetch(
            "SELECT id, tenant, prefix, name, created_at, revoked_at FROM api_keys "
            "WHERE $1::text IS NULL OR tenant = $1 ORDER BY created_at",
            tenant,
        )
        return [ApiKey(**dict(r)) for r in rows]

    async def revoke(self, key_id: str) -> bool:
        status = await self.db.pool.execute(
            "UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL", key_id
        )
        return status.endswith(" 1")
