"""A thread's messages as vector points, each embedded and keyword-indexed together with the
message it follows: a reply ("Yes, last year!") is found by what it answers.

Its keyword vector is made of both texts; its dense vector is the message's own embedding
plus 0.3 times the previous one's, normalised. Measured offline on LoCoMo's dev
conversations (evidence recall at 1,000 tokens, score fusion): 82.8% this way, 82.6% for the
mean of the message's embedding and the pair's (two embeddings per message), 80.0% for the
pair's alone, 81.8% for the message's alone.

The observer indexes new messages with it; a deletion of messages re-indexes each message
that followed a deleted one, whose point held the deleted text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from memgate_core.events import MessageRecord
from memgate_core.text import slight
from memgate_core.tokens import count_tokens
from memgate_vectors.points import KEYWORD_TEXT, MESSAGE_KIND, VectorPoint, message_point_id
from memgate_vectors.port import TextEmbedder

CONTEXT_CHARS = 1_000  # of the previous message, keyword-indexed with a message
PREVIOUS_WEIGHT = 0.3  # of the previous message's embedding in a message's dense vector


class ThreadOf(NamedTuple):
    """Where messages belong: what their points are filtered by."""

    tenant: str
    resource_id: str
    thread_id: str


async def message_points(embedder: TextEmbedder, thread: ThreadOf, messages: Sequence[MessageRecord],
                         previous: str | None) -> list[VectorPoint]:
    """The points of `messages` (one thread's, in time order, none blank), the first following
    `previous`: the text of the thread's message before them (None: they open the thread).
    One embedding per message and one for `previous`."""
    if not messages:
        return []
    texts = [m.content for m in messages] + ([previous] if previous is not None else [])
    own = np.asarray(await embedder.embed_async(texts))
    # Each message's vector leans towards the one it follows (the first towards `previous`,
    # embedded last; the thread's first one towards nothing).
    before = np.roll(own, 1, axis=0)[: len(messages)]
    if previous is None:
        before[0] = 0.0
    vectors = own[: len(messages)] + PREVIOUS_WEIGHT * before
    vectors /= np.clip(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12, None)
    contexts, said = [], previous or ""
    for m in messages:
        contexts.append(f"{said[-CONTEXT_CHARS:]}\n{m.content}" if said else m.content)
        said = m.content
    return [_message_point(thread, m, context, vector.tolist())
            for m, context, vector in zip(messages, contexts, vectors, strict=True)]


def _message_point(thread: ThreadOf, m: MessageRecord, context: str, vector: list[float]) -> VectorPoint:
    return VectorPoint(id=message_point_id(thread.tenant, m.id), vector=vector, payload={
        "tenant": thread.tenant, "resource_id": thread.resource_id, "thread_id": thread.thread_id,
        "kind": MESSAGE_KIND, "message_id": m.id, "role": m.role, "created_at": m.created_at, "text": m.content,
        KEYWORD_TEXT: context, "tokens": count_tokens(m.content), "slight": slight(m.content),
    })
