"""Versioned wire events that cross NATS. One module owns them; bump `version` on change."""

from __future__ import annotations

from collections.abc import Iterable

import msgspec


class MessageRecord(msgspec.Struct, frozen=True):
    """One chat message as memgate keeps it (text only; the raw request is not stored)."""

    id: str
    role: str
    content: str
    created_at: float  # unix seconds
    name: str | None = None


def stored_time(at: float, *, after: float | None = None) -> float:
    """`at` on the microsecond grid Postgres stores, and at least a microsecond later than
    `after` (the message before): messages of one time sort by their random ids, so each
    keeps its own time and the order with it."""
    at = round(at * 1_000_000) / 1_000_000
    return at if after is None else max(at, round(after * 1_000_000 + 1) / 1_000_000)


def stored_times(times: Iterable[float]) -> list[float]:
    """`stored_time` of each, after the one before: messages written together keep their order."""
    kept: list[float] = []
    for at in times:
        kept.append(stored_time(at, after=kept[-1] if kept else None))
    return kept


class Usage(msgspec.Struct, frozen=True):
    prompt_tokens: int = 0
    completion_tokens: int = 0


MAX_TOKEN_COUNT = 2**31 - 1  # (what the usage table's integer columns hold)


def token_count(value: object) -> int | None:
    """A provider's token count as memgate takes it: a whole number from 0 to MAX_TOKEN_COUNT;
    anything else (negative, a float, a bool, a string) is none. Usage is informational: an
    odd count must not break an answer, nor the pricing and storing of usage after it."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_TOKEN_COUNT:
        return value
    return None


class ExchangeCompleted(msgspec.Struct, frozen=True):
    """One finished exchange on a memory thread with its messages: what the edge stores
    and the Observer observes (read back from the store; it never crosses the bus)."""

    exchange_id: str
    tenant: str
    resource_id: str
    thread_id: str
    model: str
    provider: str
    # The new messages of this exchange: what the client sent this turn, then the answer.
    messages: list[MessageRecord]
    started_at: float
    completed_at: float
    interrupted: bool = False
    usage: Usage | None = None

    def recorded(self) -> ExchangeRecorded:
        return ExchangeRecorded(self.exchange_id, self.tenant, self.resource_id, self.thread_id, self.model,
                                self.provider, len(self.messages), self.started_at, self.completed_at,
                                self.interrupted, self.usage)


class ExchangeRecorded(msgspec.Struct, frozen=True, tag="exchange.recorded"):
    """Published (through the outbox) once an exchange's messages are stored. It refers to
    them by `exchange_id` and carries none of their text, so no exchange outgrows the bus."""

    exchange_id: str
    tenant: str
    resource_id: str
    thread_id: str
    model: str
    provider: str
    message_count: int
    started_at: float
    completed_at: float
    interrupted: bool = False
    usage: Usage | None = None
    version: int = 2


exchange_encoder = msgspec.json.Encoder()
exchange_decoder = msgspec.json.Decoder(ExchangeRecorded)


class ThreadsDeleted(msgspec.Struct, frozen=True, tag="threads.deleted"):
    """Announced by the memory API after it deleted threads: caches of them go."""

    tenant: str
    thread_ids: list[str]
    version: int = 1


threads_deleted_decoder = msgspec.json.Decoder(ThreadsDeleted)
