"""What the memory API's thread create and update take, checked before anything is stored."""

from __future__ import annotations

from typing import Any

import msgspec

from memgate_core.errors import InvalidRequest
from memgate_core.ids import validate_id
from memgate_edge.body import decode_body

MAX_TITLE_CHARS = 256
# As OpenAI's metadata: a few short string pairs, for an application's own bookkeeping.
MAX_METADATA_KEYS = 16
MAX_METADATA_KEY_CHARS = 64
MAX_METADATA_VALUE_CHARS = 512


class ThreadCreate(msgspec.Struct, forbid_unknown_fields=True):
    resource_id: str
    id: str | None = None  # None: memgate makes one
    title: str | None = None
    metadata: dict[str, str] = {}


class ThreadUpdate(msgspec.Struct, forbid_unknown_fields=True):
    title: str | msgspec.UnsetType | None = msgspec.UNSET  # (null clears it; left out keeps it)
    metadata: dict[str, str] | msgspec.UnsetType = msgspec.UNSET  # replaced whole


def parse_create(raw: bytes) -> ThreadCreate:
    details = decode_body(raw, ThreadCreate, what="thread")
    validate_id(details.resource_id, "resource_id")
    if details.id is not None:
        validate_id(details.id, "id")
    _check(details.title, details.metadata)
    return details


def parse_update(raw: bytes) -> ThreadUpdate:
    changes = decode_body(raw, ThreadUpdate, what="thread update")
    _check(changes.title, changes.metadata)
    return changes


def _check(title: Any, metadata: Any) -> None:
    if isinstance(title, str) and not (0 < len(title) <= MAX_TITLE_CHARS and "\x00" not in title):
        raise InvalidRequest(f"'title' must be 1-{MAX_TITLE_CHARS} characters, without NUL.", code="invalid_value",
                             param="title")
    if not isinstance(metadata, dict):
        return
    if len(metadata) > MAX_METADATA_KEYS:
        raise InvalidRequest(f"'metadata' may hold at most {MAX_METADATA_KEYS} keys.", code="invalid_value",
                             param="metadata")
    for key, value in metadata.items():
        if not (0 < len(key) <= MAX_METADATA_KEY_CHARS and len(value) <= MAX_METADATA_VALUE_CHARS) \
                or "\x00" in key or "\x00" in value:
            raise InvalidRequest(f"metadata keys must be 1-{MAX_METADATA_KEY_CHARS} characters and values at most "
                                 f"{MAX_METADATA_VALUE_CHARS}, without NUL (key {key[:80]!r}).", code="invalid_value",
                                 param=f"metadata.{key[:64]}")
