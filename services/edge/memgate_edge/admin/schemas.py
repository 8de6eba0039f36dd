"""Request and response bodies of the admin API."""

from __future__ import annotations

from datetime import datetime

import msgspec

from memgate_store.keys import ApiKey


class CreateKey(msgspec.Struct, forbid_unknown_fields=True):
    tenant: str
    name: str | None = None
    rpm: int | None = None  # chat requests per minute; 0: unlimited even with MEMGATE_DEFAULT_RPM
    burst: int | None = None  # requests at once; default: rpm
    memory_read_rpm: int | None = None  # the memory API's, likewise (default: the gateway's)
    memory_write_rpm: int | None = None
    admin: bool = False


class KeyView(msgspec.Struct):
    """A key as listings show it: never the key itself, which is stored only as a hash."""

    id: str
    tenant: str
    prefix: str
    name: str | None
    admin: bool
    rpm: int | None
    burst: int | None
    memory_read_rpm: int | None
    memory_write_rpm: int | None
    created_at: datetime
    revoked_at: datetime | None
    object: str = "api_key"

    @classmethod
    def of(cls, key: ApiKey) -> KeyView:
        return cls(id=key.id, tenant=key.tenant, prefix=key.prefix, name=key.name, admin=key.is_admin,
                   rpm=key.rpm_limit, burst=key.burst, memory_read_rpm=key.memory_read_rpm,
                   memory_write_rpm=key.memory_write_rpm, created_at=key.created_at, revoked_at=key.revoked_at)


class CreatedKey(KeyView, kw_only=True):
    key: str  # shown once, in this response only
