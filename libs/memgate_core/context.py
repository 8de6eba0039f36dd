"""The context lookup contract between edge and context service (NATS request/reply)."""

from __future__ import annotations

import hashlib

import msgspec


class ContextLookup(msgspec.Struct, frozen=True):
    tenant: str
    resource_id: str
    thread_id: str
    query: str  # the latest user text: drives cross-thread recall
    budget_tokens: int
    # Fingerprints of messages the client sent itself (clients that resend their whole
    # history): those are not injected a second time.
    client_messages: list[str] = msgspec.field(default_factory=list)
    # Most tokens for what recall adds (relevant messages and observations of the
    # resource, beyond the thread's own newest memory); None: whatever the budget leaves.
    related_budget_tokens: int | None = None
    version: int = 1


class ObservationItem(msgspec.Struct, frozen=True):
    id: str
    thread_id: str
    text: str
    priority: str
    observed_on: str  # ISO date (and time of day, when known) the observation refers to
    score: float | None = None  # recalled: its relevance to the query (None: the thread's own)


class MessageItem(msgspec.Struct, frozen=True):
    id: str
    role: str
    content: str
    created_at: float
    thread_id: str = ""  # recalled: the thread it came from ("": the request's own)
    score: float | None = None  # recalled: its relevance to the query


class ContextBlock(msgspec.Struct, tag="block"):
    thread_observations: list[ObservationItem]
    related_observations: list[ObservationItem]
    recent_messages: list[MessageItem]
    text: str  # the rendered block the edge injects; empty when there is no memory yet
    tokens: int
    lookup_ms: float = 0.0
    skipped_messages: int = 0  # raw messages left out because the client sent them itself
    # Messages recall found relevant (of this thread beyond its recent ones, or of others).
    recalled_messages: list[MessageItem] = msgspec.field(default_factory=list)
    version: int = 1

    @property
    def observation_count(self) -> int:
        return len(self.thread_observations) + len(self.related_observations)


class ContextFailure(msgspec.Struct, tag="failure"):
    error: str
    version: int = 1


def message_fingerprint(role: str, text: str) -> str:
    """Identifies a message by role and (white-space normalised) text, wherever it was seen."""
    normalised = " ".join(text.split())
    return hashlib.blake2b(f"{role}\n{normalised}".encode(), digest_size=8).hexdigest()


lookup_encoder = msgspec.json.Encoder()
lookup_decoder = msgspec.json.Decoder(ContextLookup)
block_decoder: msgspec.json.Decoder[ContextBlock | ContextFailure] = msgspec.json.Decoder(ContextBlock | ContextFailure)
