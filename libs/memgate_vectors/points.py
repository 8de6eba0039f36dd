"""What the vector index stores (one point per observation) and what a search returns."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import msgspec

# Every point carries these; the index filters and deletes by the first three.
REQUIRED_PAYLOAD = ("tenant", "resource_id", "thread_id", "observation_id", "text")


class VectorPoint(msgspec.Struct, frozen=True):
    """One embedded observation (its keyword vector is derived from payload["text"]).

    `id` is a UUID string that callers derive deterministically (e.g. uuid5 of the
    observation id), so writing the same observation twice overwrites it.
    """

    id: str
    vector: list[float]
    payload: dict[str, Any]


class VectorHit(msgspec.Struct, frozen=True):
    """A search result, best first; higher `score` is better.

    `score` is cosine similarity for a dense search, and the fused RRF score (at most
    2 / 60, not comparable to cosine) for a hybrid one.
    """

    id: str
    score: float
    payload: dict[str, Any]


def checked_points(points: Sequence[VectorPoint], dim: int) -> list[VectorPoint]:
    """Validate points the same way for every adapter, returning them with canonical ids.

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
        checked.append(point if canonical == point.id else msgspec.structs.replace(point, id=canonical))
    return checked
