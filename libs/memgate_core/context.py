"""The context lookup contract between edge and context service (NATS request/reply)."""

from __future__ import annotations

import msgspec


class ContextLookup(msgspec.Struct, frozen=True):
    tenant: str
    resource_id: str
    thread_id: str
    query: str  # the latest user text: drives cross-thread recall
    budget_tokens: int
    version: int = 1


class ObservationItem(msgspec.Struct, frozen=True):
    id: str
    thread_id: str
    text: str
    priority: str
    observed_on: str  # ISO date the observation refers to


class MessageItem(msgspec.Struct, frozen=True):
    id: str
    role: str
    content: str
    created_at: float


class ContextBlock(msgspec.Struct, tag="block"):
    thread_observations: list[ObservationItem]
    related_observations: list[ObservationItem]
    recent_messages: list[MessageItem]
    text: str  # the rendered block the edge injects; empty when there is no memory yet
    tokens: int
    lookup_ms: float = 0.0
    version: int = 1

    @property
    def observation_count(self) -> int:
        return len(self.thread_observations) + len(self.related_observations)


class ContextFailure(msgspec.Struct, tag="failure"):
    error: str
    version: int = 1


lookup_encoder = msgspec.json.Encoder()
lookup_decoder = msgspec.json.Decoder(ContextLookup)
block_decoder = msgspec.json.Decoder(ContextBlock | ContextFailure)
