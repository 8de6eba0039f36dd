"""What the memory API's thread requests take (create, update, clone, message deletion),
checked before anything is stored."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec

from memgate_core.errors import InvalidRequest
from memgate_core.ids import validate_id
from memgate_edge.body import decode_body
from memgate_edge.chat.request import MAX_MESSAGES

MAX_TITLE_CHARS = 256
# As OpenAI's metadata: a few short string pairs, for an application's own bookkeeping.
MAX_METADATA_KEYS = 16
MAX_METADATA_KEY_CHARS = 64
MAX_METADATA_VALUE_CHARS = 512
MAX_CLONED_MESSAGES = 10_000  # one clone's; more: clone a date range at a time


class ThreadCreate(msgspec.Struct, forbid_unknown_fields=True):
    resource_id: str
    id: str | None = None  # None: memgate makes one
    title: str | None = None
    metadata: dict[str, str] = {}


class ThreadUpdate(msgspec.Struct, forbid_unknown_fields=True):
    title: str | msgspec.UnsetType | None = msgspec.UNSET  # (null clears it; left out keeps it)
    metadata: dict[str, str] | msgspec.UnsetType = msgspec.UNSET  # replaced whole


class ThreadClone(msgspec.Struct, forbid_unknown_fields=True):
    """Which messages go (`message_ids`, and or sent in [start, end); all when neither) into
    a new thread of the same resource."""

    new_thread_id: str | None = None
    title: str | None = None  # None: the source's
    message_ids: list[str] | None = None
    start: datetime | None = None  # (without an offset: UTC)
    end: datetime | None = None


class MessageDeletion(msgspec.Struct, forbid_unknown_fields=True):
    message_ids: list[str]


# A thread's own observational-memory thresholds, in tokens (null: back to the tenant's or
# the gateway's): raw message tokens that make observations active, and active observation
# tokens that make the Reflector rewrite them.
Threshold = Annotated[int, msgspec.Meta(ge=100, le=10_000_000)]


class ObservationConfig(msgspec.Struct, forbid_unknown_fields=True):
    observation_tokens: Threshold | msgspec.UnsetType | None = msgspec.UNSET
    reflection_tokens: Threshold | msgspec.UnsetType | None = msgspec.UNSET


def parse_config(raw: bytes) -> ObservationConfig:
    return decode_body(raw, ObservationConfig, what="observation config")


def parse_clone(raw: bytes) -> ThreadClone:
    clone = decode_body(raw or b"{}", ThreadClone, what="clone request")
    if clone.new_thread_id is not None:
        validate_id(clone.new_thread_id, "new_thread_id")
    _check(clone.title, None)
    if clone.message_ids is not None:
        _check_message_ids(clone.message_ids, MAX_CLONED_MESSAGES)
    start, end = _utc(clone.start, "start"), _utc(clone.end, "end")
    if start is not None and end is not None and start >= end:
        raise InvalidRequest("'start' must be earlier than 'end'.", code="invalid_value", param="start")
    return msgspec.structs.replace(clone, start=start, end=end)


def parse_deletion(raw: bytes) -> MessageDeletion:
    deletion = decode_body(raw, MessageDeletion, what="message deletion")
    _check_message_ids(deletion.message_ids, MAX_MESSAGES)
    return deletion


def _check_message_ids(ids: list[str], most: int) -> None:
    # memgate's own message ids keep the client id rule; an id that breaks it names no
    # message, and may not reach the stores (NUL) or the id caches (any length).
    if not 1 <= len(ids) <= most:
        raise InvalidRequest(f"'message_ids' must hold 1 to {most} ids.", param="message_ids")
    for message_id in ids:
        validate_id(message_id, "message_ids")


def _utc(value: datetime | None, param: str) -> datetime | None:
    """In UTC (a time without an offset is UTC already): a time in range with its offset
    can be out of it in UTC (0001-01-01T00:00+05:00), which the stores cannot take."""
    if value is None:
        return None
    try:
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    except OverflowError:
        raise InvalidRequest(f"'{param}' lies outside the years 1 to 9999 in UTC.", param=param) from None


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
