"""A tenant's own provider keys (bring-your-own-key, saved on the dashboard's Settings page).

Stored sealed (`memgate_core.encryption`: AES-256-GCM, bound to tenant and provider), never
shown again after saving: listings give the provider, the last 4 characters and when it was
saved. The chat path reads the plaintexts with `for_tenant`, cached for a few seconds per
process (a change made on another replica applies within CACHE_SECONDS; on this one, at once).
Keys are never logged, and no error message holds one.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime

import msgspec

from memgate_core.encryption import SecretBox, SecretKeyError, SecretUnreadable
from memgate_store.database import Database

log = logging.getLogger("memgate.provider_keys")

CACHE_SECONDS = 5.0
MAX_KEY_CHARS = 4096
SHOWN_CHARS = 4
SHOWN_FROM_CHARS = 12  # a shorter key shows none of itself (4 of 8 would be half of it)


class SavedProviderKey(msgspec.Struct, frozen=True):
    provider: str
    last4: str  # the key's last characters ("" for a short key)
    saved_at: datetime
    readable: bool = True  # False: sealed under another secret (MEMGATE_SECRET_KEY changed): save it again


class EncryptionUnavailable(RuntimeError):
    """This process was given no secret to seal provider keys with."""


def provider_key_error(key: str) -> str | None:
    """Why a provider key cannot be stored, or None (the message never holds the key)."""
    if not key:
        return "The provider key is empty."
    if len(key) > MAX_KEY_CHARS:
        return f"A provider key is at most {MAX_KEY_CHARS:,} characters."
    if not all("!" <= c <= "~" for c in key):  # it goes into an Authorization header as is
        return "A provider key is printable ASCII without spaces."
    return None


def _context(tenant: str, provider: str) -> str:
    return f"provider-key\x1f{tenant}\x1f{provider}"


class ProviderKeyRepository:
    def __init__(self, db: Database, box: SecretBox | None, *, cache_seconds: float = CACHE_SECONDS) -> None:
        self.db = db
        self.box = box
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, dict[str, str | None]]] = {}

    def _box(self) -> SecretBox:
        if self.box is None:
            raise EncryptionUnavailable("provider keys need a secret: Stores(..., secret_box=...)")
        return self.box

    async def save(self, tenant: str, provider: str, key: str) -> SavedProviderKey:
        """Store (or replace) the tenant's key for `provider`. ValueError when the key is not
        valid (nothing is stored; the message never holds the key)."""
        problem = provider_key_error(key)
        if problem:
            raise ValueError(problem)
        sealed = self._box().seal(key, context=_context(tenant, provider))
        last4 = key[-SHOWN_CHARS:] if len(key) >= SHOWN_FROM_CHARS else ""
        row = await self.db.pool.fetchrow(
            "INSERT INTO provider_keys (tenant, provider, sealed, last4) VALUES ($1, $2, $3, $4) "
            "ON CONFLICT (tenant, provider) DO UPDATE SET sealed = $3, last4 = $4, saved_at = now() "
            "RETURNING provider, last4, saved_at", tenant, provider, sealed, last4)
        self._cache.pop(tenant, None)
        return SavedProviderKey(**dict(row))

    async def remove(self, tenant: str, provider: str) -> bool:
        """Delete the tenant's key for `provider`; False when there was none."""
        status = await self.db.pool.execute(
            "DELETE FROM provider_keys WHERE tenant = $1 AND provider = $2", tenant, provider)
        self._cache.pop(tenant, None)
        return bool(status.endswith(" 1"))

    async def list(self, tenant: str) -> list[SavedProviderKey]:
        """The tenant's saved keys, by provider: never the keys themselves."""
        rows = await self.db.pool.fetch(
            "SELECT provider, sealed, last4, saved_at FROM provider_keys WHERE tenant = $1 ORDER BY provider", tenant)
        return [SavedProviderKey(r["provider"], r["last4"], r["saved_at"],
                                 readable=self._open(tenant, r["provider"], r["sealed"]) is not None) for r in rows]

    async def for_tenant(self, tenant: str) -> dict[str, str | None]:
        """provider -> the tenant's plaintext key, for the chat path (cached: see the module).
        None for a key saved that cannot be opened (logged, without the key): the caller must
        not send the gateway's own key in its place."""
        now = time.monotonic()
        hit = self._cache.get(tenant)
        if hit is not None and hit[0] > now:
            return dict(hit[1])  # (a copy: a caller cannot change what others are given)
        try:
            rows = await self.db.pool.fetch("SELECT provider, sealed FROM provider_keys WHERE tenant = $1", tenant)
        except Exception:
            if hit is None:
                raise
            return dict(hit[1])  # Postgres away: the keys last read (never the gateway's key instead)
        keys = {r["provider"]: self._open(tenant, r["provider"], r["sealed"]) for r in rows}
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[tenant] = (now + self.cache_seconds, keys)
        return dict(keys)

    def _open(self, tenant: str, provider: str, sealed: bytes) -> str | None:
        try:
            return self._box().open(sealed, context=_context(tenant, provider))
        except (SecretUnreadable, SecretKeyError, EncryptionUnavailable) as exc:
            log.warning("tenant %s's key for provider %s cannot be opened (%s); it is not used until saved again "
                        "(was MEMGATE_SECRET_KEY or the data dir's secret.key changed?)", tenant, provider, exc)
            return None
