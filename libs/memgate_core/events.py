"""Versioned wire events that cross NATS. One module owns them; bump `version` on change."""

from __future__ import annotations

import msgspec


class MessageRecord(msgspec.Struct, frozen=True):
    """One chat message as memgate keeps it (text only; the raw request is not stored)."""

    id: str
    role: str
    content: str
    created_at: float  # unix seconds
    name: str | None = None


class Usage(msgspec.Struct, frozen=True):
    prompt_tokens: int = 0
    completion_tokens: int = 0


class ExchangeCompleted(msgspec.Struct, frozen=True, tag="exchange.completed"):
    """Published by the edge once per finished chat exchange on a memory thread."""

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
    version: int = 1


exchange_encoder = msgspec.json.Encoder()
exchange_decoder = msgspec.json.Decoder(ExchangeCompleted)
