"""Who is calling: API key authentication (three header forms, see DESIGN.md)."""

from __future__ import annotations

import time

import msgspec

from memgate_core.errors import AuthenticationFailed
from memgate_store.keys import KEY_PREFIX, ApiKey, KeyRepository, hash_key

GATEWAY_AUTH_HEADER = "x-memory-gateway-authorization"
# A revoked key stops working within this time on every replica (MEMGATE_AUTH_CACHE_SECONDS).
CACHE_SECONDS = 30.0


class Principal(msgspec.Struct, frozen=True):
    tenant: str
    provider_key: str | None = None  # bring-your-own provider key, passed upstream as is
    key_id: str | None = None
    is_admin: bool = False  # operator scope: the admin API (every tenant's keys, usage)
    rpm_limit: int | None = None  # the key's own chat limit; None: the gateway default; 0: unlimited
    burst: int | None = None  # None: burst = rpm
    memory_read_rpm: int | None = None  # its own memory API limits (the same rules)
    memory_write_rpm: int | None = None


def _bearer(value: str | None) -> str | None:
    if not value:
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


class Authenticator:
    def __init__(self, keys: KeyRepository, *, cache_seconds: float = CACHE_SECONDS) -> None:
        self.keys = keys
        self.cache_seconds = cache_seconds
        self._cache: dict[bytes, tuple[ApiKey | None, float]] = {}

    async def authenticate(self, headers: dict[str, str]) -> Principal:
        provider_key = None
        gateway = headers.get(GATEWAY_AUTH_HEADER)
        if gateway is not None:
            key = _bearer(gateway)
            provider_key = _bearer(headers.get("authorization"))
        else:
            key = _bearer(headers.get("authorization")) or headers.get("x-api-key")
        if not key:
            raise AuthenticationFailed(
                "Missing API key. Send 'Authorization: Bearer msk_...' (or x-api-key, or "
                "X-Memory-Gateway-Authorization with your provider key in Authorization).",
                code="missing_api_key",
            )
        if not key.startswith(KEY_PREFIX):
            raise AuthenticationFailed("Invalid API key: memgate keys start with 'msk_'.")
        found = await self._lookup(key)
        if found is None:
            raise AuthenticationFailed("Invalid API key.")
        return Principal(tenant=found.tenant, provider_key=provider_key, key_id=found.id, is_admin=found.is_admin,
                         rpm_limit=found.rpm_limit, burst=found.burst, memory_read_rpm=found.memory_read_rpm,
                         memory_write_rpm=found.memory_write_rpm)

    def forget(self, key_id: str) -> None:
        """Drop a key from this replica's cache at once (after a revoke); others expire it."""
        for digest in [d for d, (k, _) in self._cache.items() if k is not None and k.id == key_id]:
            del self._cache[digest]

    async def _lookup(self, key: str) -> ApiKey | None:
        digest = hash_key(key)
        now = time.monotonic()
        hit = self._cache.get(digest)
        if hit is not None and hit[1] > now:
            return hit[0]
        found = await self.keys.lookup(key)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[digest] = (found, now + self.cache_seconds)
        return found
