"""Adapter choice, point validation, and readiness of an unreachable server."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from memgate_vectors import EdgeVectorIndex, ServerVectorIndex, VectorIndex, VectorPoint, open_vector_index
from memgate_vectors.points import checked_points

PAYLOAD = {"tenant": "t", "resource_id": "r", "thread_id": "th", "observation_id": "o", "text": "x"}


def test_factory_opens_edge_under_the_data_dir_without_a_url(tmp_path: Path) -> None:
    index = open_vector_index(qdrant_url=None, data_dir=tmp_path)
    assert isinstance(index, EdgeVectorIndex) and isinstance(index, VectorIndex)
    assert index.path == tmp_path / "qdrant"
    assert index.dim == 384


async def test_factory_opens_the_server_adapter_with_a_url(tmp_path: Path) -> None:
    index = open_vector_index(qdrant_url="http://127.0.0.1:6333", data_dir=tmp_path, dim=8)
    assert isinstance(index, ServerVectorIndex) and index.dim == 8
    assert index.collection == "memgate_observations"
    await index.close()


async def test_unreachable_server_is_not_ready() -> None:
    index = ServerVectorIndex("http://127.0.0.1:9")  # discard port: nothing listens
    assert await index.ready() is False
    await index.close()


def test_points_get_canonical_ids() -> None:
    raw = str(uuid.uuid4()).upper()
    (checked,) = checked_points([VectorPoint(id=raw, vector=[0.0, 1.0], payload=PAYLOAD)], dim=2)
    assert checked.id == raw.lower()


@pytest.mark.parametrize(
    ("point", "message"),
    [
        (VectorPoint(id="nope", vector=[0.0, 1.0], payload=PAYLOAD), "UUID"),
        (VectorPoint(id=str(uuid.uuid4()), vector=[1.0], payload=PAYLOAD), "dims"),
        (VectorPoint(id=str(uuid.uuid4()), vector=[0.0, 1.0], payload={"tenant": "t"}), "resource_id"),
        (VectorPoint(id=str(uuid.uuid4()), vector=[0.0, 1.0], payload={**PAYLOAD, "text": None}), "text"),
    ],
)
def test_invalid_points_are_rejected(point: VectorPoint, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        checked_points([point], dim=2)


def test_message_point_ids_are_derived_the_same_cached_or_not() -> None:
    """A message's point id is a UUID of its tenant and id, whether it came from the cache or
    not; an id longer than memgate's own (a client may send any string) is never kept."""
    from memgate_core.ids import stable_uuid
    from memgate_vectors import points

    points._cached_message_point_id.cache_clear()
    short, long = "msg_0123456789abcdef0123456789ab", "m" * 100_000
    for message_id in (short, short, long, long):
        assert points.message_point_id("t", message_id) == stable_uuid("t", points.MESSAGE_KIND, message_id)
    info = points._cached_message_point_id.cache_info()
    assert (info.currsize, info.hits) == (1, 1)
    assert uuid.UUID(points.message_point_id("t", short)).version == 5
