"""Importing messages into a thread: the request, its validation, and its exchanges.

`POST /v1/memory/threads/{thread_id}/messages` takes past messages with their times and
records them as if they had been chatted: grouped into exchanges the way chat produces
them, each one stored and published as an `ExchangeCompleted`, so the observer observes
them, dated by their timestamps. Everything is validated before anything is stored.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime

import msgspec

from memgate_core.errors import InvalidRequest
from memgate_core.events import ExchangeCompleted, MessageRecord, stored_time
from memgate_core.ids import new_id, validate_id
from memgate_edge.body import decode_body
from memgate_edge.chat.request import MAX_CONTENT_BYTES, MAX_MESSAGES, storable

MAX_FUTURE_SECONDS = 60.0  # clock skew a client may have
ROLES = ("user", "assistant")
IMPORT_MODEL = "import"  # `model` and `provider` of imported exchanges


class ImportedMessage(msgspec.Struct, frozen=True):
    """One message to import. `created_at`: RFC 3339 (no offset: UTC) or unix seconds;
    absent: now."""

    role: str
    content: str
    created_at: str | float | None = None


class ImportRequest(msgspec.Struct, frozen=True):
    """The request body. `resource_id` is needed only to create the thread."""

    messages: list[ImportedMessage]
    resource_id: str | None = None


class StoredImport(msgspec.Struct, frozen=True):
    """One imported message as stored (the response's `data` items)."""

    id: str
    role: str
    content: str
    created_at: datetime


def parse_import(raw: bytes, *, now: float | None = None) -> tuple[str | None, list[MessageRecord]]:
    """The request's resource id and its messages as records (new ids, unix times).

    Raises `InvalidRequest` (400) for a body that is not JSON of the right shape, a bad
    resource id, no or more than `MAX_MESSAGES` messages, a role other than user or
    assistant, empty content, more than `MAX_CONTENT_BYTES` of content, a time that does not
    parse or lies more than a minute ahead, or times that go backwards. Equal times are
    nudged a microsecond apart, so the stored order is the order sent.
    """
    request = decode_body(raw, ImportRequest, what="import request")
    if request.resource_id is not None:
        validate_id(request.resource_id, "resource_id")
    if not 1 <= len(request.messages) <= MAX_MESSAGES:
        raise InvalidRequest(f"'messages' must hold 1 to {MAX_MESSAGES} messages.", param="messages")
    now = time.time() if now is None else now
    size = 0
    previous = -math.inf  # the time sent with the message before
    records: list[MessageRecord] = []
    for i, message in enumerate(request.messages):
        param = f"messages[{i}]"
        if message.role not in ROLES:
            raise InvalidRequest(f"{param}.role must be 'user' or 'assistant'.", param=f"{param}.role")
        if not message.content.strip():
            raise InvalidRequest(f"{param}.content must be a non-empty string.", param=f"{param}.content")
        size += len(message.content.encode())
        if size > MAX_CONTENT_BYTES:
            raise InvalidRequest(f"The messages' contents exceed {MAX_CONTENT_BYTES} bytes in total.",
                                 code="content_too_large", param="messages")
        at = now if message.created_at is None else _unix_seconds(message.created_at, f"{param}.created_at")
        if at > now + MAX_FUTURE_SECONDS:
            raise InvalidRequest(f"{param}.created_at lies in the future.", param=f"{param}.created_at")
        if at < previous:
            raise InvalidRequest(f"{param}.created_at is earlier than the message before it: messages must be "
                                 "in time order.", param=f"{param}.created_at")
        previous = at
        at = stored_time(at, after=records[-1].created_at if records else None)
        records.append(MessageRecord(new_id("msg"), message.role, storable(message.content), at))
    return request.resource_id, records


def _unix_seconds(value: str | float, param: str) -> float:
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            raise InvalidRequest(f"{param} must be an RFC 3339 time or unix seconds.", param=param) from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        seconds = parsed.timestamp()
    else:
        seconds = float(value)
    if not math.isfinite(seconds) or seconds < 0:
        raise InvalidRequest(f"{param} must be a time after 1970.", param=param)
    return seconds


def group_exchanges(records: list[MessageRecord]) -> list[list[MessageRecord]]:
    """Exchanges as chat makes them: consecutive user messages and the assistant message
    after them. A trailing run of user messages is an exchange, and so is an assistant
    message with no user message before it."""
    exchanges: list[list[MessageRecord]] = []
    current: list[MessageRecord] = []
    for record in records:
        current.append(record)
        if record.role == "assistant":
            exchanges.append(current)
            current = []
    if current:
        exchanges.append(current)
    return exchanges


def exchange_event(tenant: str, thread_id: str, resource_id: str, messages: list[MessageRecord]) -> ExchangeCompleted:
    """The event of one imported exchange, timed by its messages."""
    return ExchangeCompleted(
        exchange_id=new_id("exc"), tenant=tenant, resource_id=resource_id, thread_id=thread_id,
        model=IMPORT_MODEL, provider=IMPORT_MODEL, messages=messages,
        started_at=messages[0].created_at, completed_at=messages[-1].created_at,
    )


def stored_view(record: MessageRecord) -> StoredImport:
    return StoredImport(record.id, record.role, record.content, datetime.fromtimestamp(record.created_at, UTC))
