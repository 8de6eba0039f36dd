"""What the admin API does: create, list and revoke keys of any tenant; report usage."""

from __future__ import annotations

from datetime import datetime

import msgspec

from memgate_core.errors import InvalidRequest, NotFound
from memgate_core.ids import validate_id
from memgate_edge.admin.schemas import CreatedKey, CreateKey, KeyView
from memgate_edge.auth import Authenticator
from memgate_edge.body import decode_body
from memgate_store import Stores, UsageReport
from memgate_store.keys import limits_error, name_error
from memgate_store.usage import parse_since


def _when(value: str | None, param: str) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_since(value)
    except ValueError as exc:
        raise InvalidRequest(f"Invalid {param}: {exc}.", code="invalid_value", param=param) from None


class AdminService:
    def __init__(self, stores: Stores, auth: Authenticator) -> None:
        self.stores = stores
        self.auth = auth

    async def create_key(self, raw: bytes) -> CreatedKey:
        body = decode_body(raw or b"{}", CreateKey, what="key request")
        problem = limits_error(body.rpm, body.burst, memory_read_rpm=body.memory_read_rpm,
                               memory_write_rpm=body.memory_write_rpm)
        if problem:
            raise InvalidRequest(f"Invalid limits: {problem}.", code="invalid_value", param=problem.split()[0])
        name = body.name or None  # (as on the dashboard: an empty name is none)
        if problem := name_error(name):
            raise InvalidRequest(f"Invalid name: {problem}.", code="invalid_value", param="name")
        key, plaintext = await self.stores.keys.create(
            validate_id(body.tenant, "tenant"), name, is_admin=body.admin, rpm_limit=body.rpm, burst=body.burst,
            memory_read_rpm=body.memory_read_rpm, memory_write_rpm=body.memory_write_rpm)
        return CreatedKey(**msgspec.structs.asdict(KeyView.of(key)), key=plaintext)

    async def list_keys(self, tenant: str | None) -> list[KeyView]:
        return [KeyView.of(k) for k in await self.stores.keys.list(validate_id(tenant, "tenant") if tenant else None)]

    async def revoke_key(self, key_id: str) -> KeyView:
        validate_id(key_id, "key_id")  # memgate's key ids keep the client id rule
        await self.stores.keys.revoke(key_id)  # revoking a revoked key changes nothing
        key = await self.stores.keys.get(key_id)
        if key is None:
            raise NotFound(f"No API key with id '{key_id}'.", code="key_not_found", param="key_id")
        self.auth.forget(key_id)  # at once on this replica; within the auth cache time on the others
        return KeyView.of(key)

    async def usage(self, tenant: str | None, since: str | None, until: str | None) -> UsageReport:
        start, end = _when(since or "24h", "since"), _when(until, "until")
        assert start is not None
        if end is not None and end <= start:
            raise InvalidRequest("'since' must be earlier than 'until'.", code="invalid_value", param="since")
        return await self.stores.usage.report(start, end, validate_id(tenant, "tenant") if tenant else None)
