"""What the vector index stores (one point per observation or message) and what a search returns."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import msgspec

from memgate_core.ids import stable_uuid

# Every point carries these; the index filters and deletes by the first three. What a
# point is (payload "kind": "observation" or "message") and its provenance are the
# writer's business; the index only stores them.
REQUIRED_PAYLOAD = ("tenant", "resource_id", "thread_id", "text")
# Optional: the text the keyword (sparse) vector is made of, when it should be more than
# "text" itself (a message indexed together with the one it answers).
KEYWORD_TEXT = "keyword_text"


# payload["kind"] of a message's point; every other point (observations, also those
# written before messages were indexed, which have no kind) is not a message.
MESSAGE_KIND = "message"


# Added to every point's payload by checked_points (keyword-indexed): its tenant, resource
# and whether it is a message, in one value, which rankings filter by. One condition instead
# of three: on a Qdrant Edge shard written to since it was opened, a dense ranking of 20,000
# messages filtered this way took 2.2 ms against 5.5 ms, and of 10,000 observations 0.9 ms
# against 5.0 ms (measured), the largest part of a recall.
SCOPE = "scope"


def scope(tenant: str, resource_id: str, *, message: bool) -> str:
    return "\x1f".join((tenant, resource_id, MESSAGE_KIND if message else "other"))


def scope_of(payload: dict[str, Any]) -> str:
    return scope(str(payload["tenant"]), str(payload["resource_id"]), message=payload.get("kind") == MESSAGE_KIND)


CACHED_MESSAGE_ID_CHARS = 64  # memgate's message ids have 32 characters


def message_point_id(tenant: str, message_id: str) -> str:
    """The id of a message's point: derived, so an observation's source message ids lead
    to their points, and indexing a message twice overwrites it.

    Kept for the ids asked again (9 us each to derive, 0.14 from the cache): a recall
    derives those of the block's messages and of its observations' sources, about 200,
    mostly the same from one turn of a thread to the next. Full, the cache holds about 5 MB;
    ids longer than memgate's own (a client may name any string) are derived, not kept."""
    if len(message_id) > CACHED_MESSAGE_ID_CHARS:
        return stable_uuid(tenant, MESSAGE_KIND, message_id)
    return _cached_message_point_id(tenant, message_id)


@lru_cache(maxsize=16_384)
def _cached_message_point_id(tenant: str, message_id: str) -> str:
    return stable_uuid(tenant, MESSAGE_KIND, message_id)


def keyword_text(payload: dict[str, Any]) -> str:
    """The text a point's keyword vector is computed from."""
    text = payload.get(KEYWORD_TEXT)
    return text if isinstance(text, str) else str(payload.get("text", ""))


class VectorPoint(msgspec.Struct, frozen=True):
    """One embedded text (its keyword vector is derived from `keyword_text(payload)`).

    `id` is a UUID string that callers derive deterministically (e.g. uuid5 of the
    observation id), so writing the same observation twice overwrites it.
    """

    id: str
    vector: list[float]
    payload: dict[str, Any]


class VectorHit(msgspec.Struct, frozen=True):
    """A search result, best first; higher `score` is better.

    `score` is cosine similarity for a dense search, the fused RRF score (at most
    2 / 60, not comparable to cosine) for a hybrid one, and the BM25 score for a
    keyword ranking.
    """

    id: str
    score: float
    payload: dict[str, Any]


class Rankings(msgspec.Struct, frozen=True):
    """The two rankings of one query, each best first, for the caller to fuse."""

    dense: list[VectorHit]  # by cosine similarity
    keyword: list[VectorHit]  # by BM25 score; empty when the query has no terms or the index is not hybrid


def checked_points(points: Sequence[VectorPoint], dim: int) -> list[VectorPoint]:
    """Validate points the same way for every adapter, returning them with canonical ids
    and their SCOPE.

    The engines reject bad input with different errors (or, for a missing tenant,
    not at all: the point would be unreachable by tenant deletes), so check up front.
    """
    checked = []
    for point in points:
        try:
            canonical = str(uuid.UUID(point.id))
        except (ValueError, AttributeError, TypeError):
            raise ValueError(f"point id must be a UUID string, got {point.id!r}") from None
        if len(point.vector) != dim:
            raise ValueError(f"point {point.id}: vector has {len(point.vector)} dims, index has {dim}")
        missing = [key for key in REQUIRED_PAYLOAD if key not in point.payload]
        if missing:
            raise ValueError(f"point {point.id}: payload lacks {', '.join(missing)}")
        if not isinstance(point.payload["text"], str):
            raise ValueError(f"point {point.id}: payload text must be a string")
        checked.append(VectorPoint(canonical, point.vector, {**point.payload, SCOPE: scope_of(point.payload)}))
    return checked
