"""What the observer writes to the vector index: one point per message and per observation.

Everything remembered is searchable, so the context service can recall a thread's old
messages and other threads' messages as well as observations. A message point is
embedded and keyword-indexed together with the message it follows in its thread: a reply
("Yes, last year!") is found by what it answers. Its keyword vector is made of both
texts; its dense vector is the message's own embedding plus 0.3 times the previous one's,
normalised. Measured offline on LoCoMo's dev conversations (evidence recall at 1,000
tokens, score fusion): 82.8% this way, 82.6% for the mean of the message's embedding and
the pair's (two embeddings per message), 80.0% for the pair's alone, 81.8% for the
message's alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np

from memgate_core.events import ExchangeCompleted, MessageRecord
from memgate_core.text import slight
from memgate_core.tokens import count_tokens
from memgate_store import Observation
from memgate_store.threads import ThreadRepository
from memgate_vectors import KEYWORD_TEXT, MESSAGE_KIND, TextEmbedder, VectorPoint, message_point_id

OBSERVATION_KIND = "observation"
CONTEXT_CHARS = 1_000  # of the previous message, keyword-indexed with a message
PREVIOUS_WEIGHT = 0.3  # of the previous message's embedding in a message's dense vector


def observation_point(o: Observation, vector: list[float]) -> VectorPoint:
    return VectorPoint(id=o.id, vector=vector, payload={
        "tenant": o.tenant, "resource_id": o.resource_id, "thread_id": o.thread_id, "kind": OBSERVATION_KIND,
        "observation_id": o.id, "text": o.text, "priority": o.priority, "observed_on": o.observed_on.isoformat(),
        "observed_time": o.observed_time.strftime("%H:%M") if o.observed_time else None,
        "source_message_ids": list(o.source_message_ids), "tokens": o.tokens,
    })


class MessageIndexer:
    """Builds the points of a batch's messages (the embedding is the expensive part: one per
    message, and one for the message the batch follows)."""

    def __init__(self, threads: ThreadRepository, embedder: TextEmbedder) -> None:
        self.threads = threads
        self.embedder = embedder

    async def points(self, events: Sequence[ExchangeCompleted]) -> list[VectorPoint]:
        messages = sorted((m for e in events for m in e.messages if m.content.strip()),
                          key=lambda m: (m.created_at, m.id))
        if not messages:
            return []
        first = events[0]
        previous = await self.threads.previous_message(
            first.tenant, first.thread_id, datetime.fromtimestamp(messages[0].created_at, UTC))
        texts = [m.content for m in messages] + ([previous.content] if previous is not None else [])
        own = np.asarray(await self.embedder.embed_async(texts))
        # Each message's vector leans towards the one it follows (the batch's first one
        # towards `previous`, embedded last; the thread's first one towards nothing).
        before = np.roll(own, 1, axis=0)[: len(messages)]
        if previous is None:
            before[0] = 0.0
        vectors = own[: len(messages)] + PREVIOUS_WEIGHT * before
        vectors /= np.clip(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12, None)
        contexts, said = [], previous.content if previous is not None else ""
        for m in messages:
            contexts.append(f"{said[-CONTEXT_CHARS:]}\n{m.content}" if said else m.content)
            said = m.content
        return [_message_point(first, m, context, vector.tolist())
                for m, context, vector in zip(messages, contexts, vectors)]


def _message_point(e: ExchangeCompleted, m: MessageRecord, context: str, vector: list[float]) -> VectorPoint:
    return VectorPoint(id=message_point_id(e.tenant, m.id), vector=vector, payload={
        "tenant": e.tenant, "resource_id": e.resource_id, "thread_id": e.thread_id, "kind": MESSAGE_KIND,
        "message_id": m.id, "role": m.role, "created_at": m.created_at, "text": m.content,
        KEYWORD_TEXT: context, "tokens": count_tokens(m.content), "slight": slight(m.content),
    })
