"""What the observer writes to the vector index: one point per message and per observation.

Everything remembered is searchable, so the context service can recall a thread's old
messages and other threads' messages as well as observations. A message point is
embedded and keyword-indexed together with the message it follows in its thread: a reply
("Yes, last year!") is found by what it answers. Its dense vector is the mean of the
message's own embedding and that of the pair (measured on LoCoMo's dev conversations,
evidence recall at 1,000 tokens: 80.0% for the pair alone, 82.6% for the mean, 74.4%
for the message alone with rank fusion).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone

import numpy as np

from memgate_core.events import ExchangeCompleted, MessageRecord
from memgate_core.ids import stable_uuid
from memgate_core.tokens import count_tokens
from memgate_store import Observation
from memgate_store.threads import ThreadRepository
from memgate_vectors import KEYWORD_TEXT, MESSAGE_KIND, Embedder, VectorPoint

OBSERVATION_KIND = "observation"
CONTEXT_CHARS = 1_000  # of the previous message, indexed with a message


def observation_point(o: Observation, vector: list[float]) -> VectorPoint:
    return VectorPoint(id=o.id, vector=vector, payload={
        "tenant": o.tenant, "resource_id": o.resource_id, "thread_id": o.thread_id, "kind": OBSERVATION_KIND,
        "observation_id": o.id, "text": o.text, "priority": o.priority, "observed_on": o.observed_on.isoformat(),
        "observed_time": o.observed_time.strftime("%H:%M") if o.observed_time else None,
        "source_message_ids": list(o.source_message_ids), "tokens": o.tokens,
    })


def message_point_id(tenant: str, message_id: str) -> str:
    return stable_uuid(tenant, MESSAGE_KIND, message_id)


class MessageIndexer:
    """Builds the points of a batch's messages (the embedding is the expensive part)."""

    def __init__(self, threads: ThreadRepository, embedder: Embedder) -> None:
        self.threads = threads
        self.embedder = embedder

    async def points(self, events: Sequence[ExchangeCompleted]) -> list[VectorPoint]:
        messages = sorted((m for e in events for m in e.messages if m.content.strip()),
                          key=lambda m: (m.created_at, m.id))
        if not messages:
            return []
        first = events[0]
        previous = await self.threads.previous_message(
            first.tenant, first.thread_id, datetime.fromtimestamp(messages[0].created_at, timezone.utc))
        before = previous.content if previous is not None else ""
        contexts = []
        for m in messages:
            contexts.append(f"{before[-CONTEXT_CHARS:]}\n{m.content}" if before else m.content)
            before = m.content
        vectors = await self.embedder.embed_async([m.content for m in messages] + contexts)
        own, paired = np.asarray(vectors[: len(messages)]), np.asarray(vectors[len(messages):])
        mean = own + paired
        mean /= np.clip(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12, None)
        return [_message_point(first, m, context, vector.tolist())
                for m, context, vector in zip(messages, contexts, mean)]


def _message_point(e: ExchangeCompleted, m: MessageRecord, context: str, vector: list[float]) -> VectorPoint:
    return VectorPoint(id=message_point_id(e.tenant, m.id), vector=vector, payload={
        "tenant": e.tenant, "resource_id": e.resource_id, "thread_id": e.thread_id, "kind": MESSAGE_KIND,
        "message_id": m.id, "role": m.role, "created_at": m.created_at, "text": m.content,
        KEYWORD_TEXT: context, "tokens": count_tokens(m.content),
    })
