"""What the observer writes to the vector index: one point per message and per observation.

Everything remembered is searchable, so the context service can recall a thread's old
messages and other threads' messages as well as observations. A message point is embedded
and keyword-indexed together with the message it follows in its thread
(`memgate_vectors.messages`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import NamedTuple

from memgate_core.events import ExchangeCompleted
from memgate_store import Observation
from memgate_store.threads import ThreadRepository
from memgate_vectors import TextEmbedder, VectorPoint
from memgate_vectors.messages import ThreadOf, message_points

OBSERVATION_KIND = "observation"


def observation_point(o: Observation, vector: list[float]) -> VectorPoint:
    return VectorPoint(id=o.id, vector=vector, payload={
        "tenant": o.tenant, "resource_id": o.resource_id, "thread_id": o.thread_id, "kind": OBSERVATION_KIND,
        "observation_id": o.id, "text": o.text, "priority": o.priority, "observed_on": o.observed_on.isoformat(),
        "observed_time": o.observed_time.strftime("%H:%M") if o.observed_time else None,
        "source_message_ids": list(o.source_message_ids), "tokens": o.tokens,
    })


class IndexedMessages(NamedTuple):
    points: list[VectorPoint]
    follows: str | None  # the id of the thread's message the first one follows (None: it opens it)


class MessageIndexer:
    """Builds the points of a batch's messages (`memgate_vectors.messages`: the embedding is
    the expensive part, one per message and one for the message the batch follows)."""

    def __init__(self, threads: ThreadRepository, embedder: TextEmbedder) -> None:
        self.threads = threads
        self.embedder = embedder

    async def points(self, events: Sequence[ExchangeCompleted]) -> IndexedMessages:
        messages = sorted((m for e in events for m in e.messages if m.content.strip()),
                          key=lambda m: (m.created_at, m.id))
        if not messages:
            return IndexedMessages([], None)
        first = events[0]
        previous = await self.threads.previous_message(
            first.tenant, first.thread_id, datetime.fromtimestamp(messages[0].created_at, UTC))
        points = await message_points(self.embedder, ThreadOf(first.tenant, first.resource_id, first.thread_id),
                                      messages, previous.content if previous is not None else None)
        return IndexedMessages(points, previous.id if previous is not None else None)
