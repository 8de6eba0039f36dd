"""API keys: created once, shown once, stored as sha256 hashes.

A key belongs to one tenant. An *admin* key additionally carries the operator scope: it
may manage the keys of every tenant and read usage (the admin API). Keys may carry a rate
limit (requests per minute, burst); `rpm_limit` None means "the gateway default".
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime
from typing import cast

import msgspec

from memgate_core.ids import new_id
from memgate_store.database import Database

KEY_PREFIX = "msk_"
MAX_RPM = 1_000_000

_COLUMNS = "id, tenant, prefix, name, created_at, revoked_at, is_admin, rpm_limit, burst, memory_read_rpm, memory_write_rpm"


class ApiKey(msgspec.Struct, frozen=True):
    id: str
    tenant: str
    prefix: str
    name: str | None
    created_at: datetime
    revoked_at: datetime | None = None
    is_admin: bool = False
    rpm_limit: int | None = None  # chat; None: the gateway default (MEMGATE_DEFAULT_RPM); 0: unlimited
    burst: int | None = None  # None: burst = rpm_limit
    memory_read_rpm: int | None = None  # the memory API's reads and writes: the same, each with
    memory_write_rpm: int | None = None  # its own default (MEMGATE_MEMORY_READ_RPM, _WRITE_RPM)


def hash_key(plaintext: str) -> bytes:
    # Keys carry 256 random bits, so a plain digest cannot be brute-forced; no salt is needed.
    return hashlib.sha256(plaintext.encode()).digest()


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


MAX_NAME_CHARS = 100  # a key's name, for people reading listings


def name_error(name: str | None) -> str | None:
    """Why a key's name is not valid (it is shown in listings and the dashboard), or None."""
    if name is not None and not (0 < len(name) <= MAX_NAME_CHARS and name.isprintable()):
        return f"a key's name is 1-{MAX_NAME_CHARS} printable characters"
    return None


def limits_error(rpm_limit: int | None, burst: int | None, *, memory_read_rpm: int | None = None,
                 memory_write_rpm: int | None = None) -> str | None:
    """Why a key's limits are not valid, or None when they are."""
    for name, rpm in (("rpm", rpm_limit), ("memory_read_rpm", memory_read_rpm), ("memory_write_rpm", memory_write_rpm)):
        if rpm is not None and not 0 <= rpm <= MAX_RPM:
            return f"{name} must be between 0 (unlimited) and {MAX_RPM}"
    if burst is not None:
        if not rpm_limit:
            return "burst needs a non-zero rpm"
        if not 1 <= burst <= MAX_RPM:
            return f"burst must be between 1 and {MAX_RPM}"
    return None


class KeyRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(
        self, tenant: str, name: str | None = None, *, is_admin: bool = False,
        rpm_limit: int | None = None, burst: int | None = None,
        memory_read_rpm: int | None = None, memory_write_rpm: int | None = None,
    ) -> tuple[ApiKey, str]:
        problem = name_error(name) or limits_error(rpm_limit, burst, memory_read_rpm=memory_read_rpm,
                                                   memory_write_rpm=memory_write_rpm)
        if problem:
            raise ValueError(problem)
        plaintext = generate_key()
        row = await self.db.pool.fetchrow(
            f"""
            INSERT INTO api_keys (id, tenant, key_hash, prefix, name, is_admin, rpm_limit, burst, memory_read_rpm,
                                  memory_write_rpm)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING {_COLUMNS}
            """,
            new_id("key"), tenant, hash_key(plaintext), plaintext[:10], name, is_admin, rpm_limit, burst,
            memory_read_rpm, memory_write_rpm,
        )
        return ApiKey(**dict(row)), plaintext

    async def insert(self, plaintext: str, tenant: str, name: str | None = None, *, is_admin: bool = False) -> ApiKey:
        """Store a given key (idempotent: an existing key keeps its tenant and limits, is
        un-revoked, and gets the admin scope the caller says; used for keys set by env)."""
        row = await self.db.pool.fetchrow(
            f"""
            INSERT INTO api_keys (id, tenant, key_hash, prefix, name, is_admin) VALUES ($1, $2, $3, $4, $5, $6)
            ON CONFLICT (key_hash) DO UPDATE SET revoked_at = NULL, is_admin = EXCLUDED.is_admin
            RETURNING {_COLUMNS}
            """,
            new_id("key"), tenant, hash_key(plaintext), plaintext[:10], name, is_admin,
        )
        return ApiKey(**dict(row))

    async def lookup(self, plaintext: str) -> ApiKey | None:
        """The active key with this plaintext, or None."""
        row = await self.db.pool.fetchrow(
            f"SELECT {_COLUMNS} FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL", hash_key(plaintext)
        )
        return ApiKey(**dict(row)) if row is not None else None

    async def tenant_for(self, plaintext: str) -> str | None:
        return cast("str | None", await self.db.pool.fetchval(
            "SELECT tenant FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL", hash_key(plaintext)
        ))

    async def get(self, key_id: str) -> ApiKey | None:
        row = await self.db.pool.fetchrow(f"SELECT {_COLUMNS} FROM api_keys WHERE id = $1", key_id)
        return ApiKey(**dict(row)) if row is not None else None

    async def count(self) -> int:
        return int(await self.db.pool.fetchval("SELECT count(*) FROM api_keys WHERE revoked_at IS NULL"))

    async def list(self, tenant: str | None = None) -> list[ApiKey]:
        rows = await self.db.pool.fetch(
            f"SELECT {_COLUMNS} FROM api_keys WHERE $1::text IS NULL OR tenant = $1 ORDER BY created_at, id",
            tenant,
        )
        return [ApiKey(**dict(r)) for r in rows]

    async def set_limits(self, key_id: str, *, tenant: str, rpm_limit: int | None, burst: int | None,
                         memory_read_rpm: int | None, memory_write_rpm: int | None) -> ApiKey | None:
        """Replace a key's limits (None: the gateway default). Only the tenant's own active,
        non-admin keys (None otherwise: no such key for this tenant). ValueError when the
        limits are not valid."""
        problem = limits_error(rpm_limit, burst, memory_read_rpm=memory_read_rpm, memory_write_rpm=memory_write_rpm)
        if problem:
            raise ValueError(problem)
        row = await self.db.pool.fetchrow(
            f"""
            UPDATE api_keys SET rpm_limit = $3, burst = $4, memory_read_rpm = $5, memory_write_rpm = $6
            WHERE id = $1 AND tenant = $2 AND revoked_at IS NULL AND NOT is_admin RETURNING {_COLUMNS}
            """,
            key_id, tenant, rpm_limit, burst, memory_read_rpm, memory_write_rpm,
        )
        return ApiKey(**dict(row)) if row is not None else None

    async def revoke(self, key_id: str) -> bool:
        status = await self.db.pool.execute(
            "UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL", key_id
        )
        return bool(status.endswith(" 1"))
