"""Who is calling: API key authentication (three header forms, see DESIGN.md)."""

from __future__ import annotations

import time

import msgspec

from memgate_core.errors import AuthenticationFailed
from memgate_store.keys import KEY_PREFIX, KeyRepository, hash_key

GATEWAY_AUTH_HEADER = "x-memory-gateway-authorization"
CACHE_SECONDS = 30.0  # a revoked key stops working within this time on every replica


class Principal(msgspec.Struct, frozen=True):
    tenant: str
    provider_key: str | None = None  # bring-your-own provider key, passed upstream as is


def _bearer(value: str | None) -> str | None:
    if not value:
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


class Authenticator:
    def __init__(self, keys: KeyRepository) -> None:
        self.keys = keys
        self._cache: dict[bytes, tuple[str | None, float]] = {}

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
        tenant = await self._tenant_for(key)
        if tenant is None:
            raise AuthenticationFailed("Invalid API key.")
        return Principal(tenant=tenant, provider_key=provider_key)

    async def _tenant_for(self, key: str) -> str | None:
        digest = hash_key(key)
        now = time.monotonic()
        hit = self._cache.get(digest)
        if hit is not None and hit[1] > now:
            return hit[0]
        tenant = await self.keys.tenant_for(key)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[digest] = (tenant, now + CACHE_SECONDS)
        return tenant
