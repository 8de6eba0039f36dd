"""One contract for every VectorIndex adapter.

Runs against Qdrant Edge (in a temp dir), qdrant-client's local mode injected into
ServerVectorIndex, and a real Qdrant server via testcontainers where Docker is
reachable (skipped with the reason otherwise).
"""

from __future__ import annotations

import functools
import math
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from qdrant_client import AsyncQdrantClient

from memgate_vectors import EdgeVectorIndex, Embedder, ServerVectorIndex, VectorIndex, VectorPoint

# Local mode has no payload indexes and says so each time ensure() creates one.
pytestmark = pytest.mark.filterwarnings("ignore:Payload indexes have no effect:UserWarning")

DIM = 384
QDRANT_IMAGE = os.environ.get("MEMGATE_TEST_QDRANT_IMAGE", "qdrant/qdrant:v1.16.2")


@functools.cache
def _docker_unreachable() -> str | None:
    """Why no Docker engine can be used here, or None if one answers a ping."""
    try:
        import docker

        client = docker.from_env(timeout=3)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:  # no socket, no daemon, no permission: all mean "skip"
        return f"no Docker engine reachable for testcontainers ({type(exc).__name__}: {exc})"
    return None


@pytest.fixture(scope="session")
def qdrant_server_url() -> Iterator[str]:
    reason = _docker_unreachable()
    if reason:
        pytest.skip(reason)
    from testcontainers.community.qdrant import QdrantContainer

    with QdrantContainer(QDRANT_IMAGE) as qdrant:
        yield f"http://{qdrant.rest_host_address}"


@pytest.fixture(params=["edge", "local", "server"])
async def index(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[VectorIndex]:
    client: AsyncQdrantClient | None = None
    idx: VectorIndex
    if request.param == "edge":
        idx = EdgeVectorIndex(tmp_path / "qdrant", dim=DIM)
    elif request.param == "local":
        client = AsyncQdrantClient(location=":memory:")
        idx = ServerVectorIndex(":memory:", dim=DIM, client=client)
    else:
        url = request.getfixturevalue("qdrant_server_url")
        # A collection per test keeps tests independent on the shared server.
        idx = ServerVectorIndex(url, collection=f"contract_{uuid.uuid4().hex}", dim=DIM)
    assert not await idx.ready()
    await idx.ensure()
    yield idx
    await idx.close()
    if client is not None:
        await client.close()


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder()


def axis(*weights: float) -> list[float]:
    """A unit vector with the given leading components (the rest zero)."""
    vector = [*weights, *([0.0] * (DIM - len(weights)))]
    norm = math.sqrt(sum(w * w for w in weights))
    return [w / norm for w in vector]


def point(
    vector: list[float],
    *,
    tenant: str = "acme",
    resource_id: str = "user-1",
    thread_id: str = "thread-1",
    text: str = "",
    id: str | None = None,
    **extra: Any,
) -> VectorPoint:
    observation_id = uuid.uuid4().hex
    payload = {
        "tenant": tenant,
        "resource_id": resource_id,
        "thread_id": thread_id,
        "observation_id": observation_id,
        "text": text,
        **extra,
    }
    return VectorPoint(id=id or str(uuid.uuid5(uuid.NAMESPACE_URL, observation_id)), vector=vector, payload=payload)


async def test_conforms_to_port_and_ensure_is_idempotent(index: VectorIndex) -> None:
    assert isinstance(index, VectorIndex)
    assert index.dim == DIM
    await index.ensure()
    assert await index.ready()
    assert await index.count(tenant="acme") == 0


async def test_search_returns_nearest_first(index: VectorIndex) -> None:
    near, middle, far = point(axis(1), text="near"), point(axis(1, 1)), point(axis(0, 1))
    await index.upsert([far, near, middle])

    hits = await index.search(axis(1), tenant="acme", resource_id="user-1")

    assert [h.id for h in hits] == [near.id, middle.id, far.id]
    assert hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert hits[1].score == pytest.approx(math.sqrt(0.5), abs=1e-4)
    assert hits[0].payload == near.payload
    assert len(await index.search(axis(1), tenant="acme", resource_id="user-1", limit=2)) == 2


async def test_payload_extras_round_trip(index: VectorIndex) -> None:
    p = point(axis(1), observed_at="2026-11-02T10:00:00Z", priority=2)
    await index.upsert([p])
    (hit,) = await index.search(axis(1), tenant="acme", resource_id="user-1")
    assert hit.payload["observed_at"] == "2026-11-02T10:00:00Z"
    assert hit.payload["priority"] == 2


async def test_tenants_are_isolated(index: VectorIndex) -> None:
    mine, theirs = point(axis(1), tenant="acme"), point(axis(1), tenant="globex")
    await index.upsert([mine, theirs])

    assert [h.id for h in await index.search(axis(1), tenant="acme", resource_id="user-1")] == [mine.id]
    assert [h.id for h in await index.search(axis(1), tenant="globex", resource_id="user-1")] == [theirs.id]
    assert await index.search(axis(1), tenant="initech", resource_id="user-1") == []


async def test_search_is_filtered_by_resource(index: VectorIndex) -> None:
    mine, other = point(axis(1), resource_id="user-1"), point(axis(1), resource_id="user-2")
    await index.upsert([mine, other])

    assert [h.id for h in await index.search(axis(1), tenant="acme", resource_id="user-1")] == [mine.id]
    assert await index.search(axis(1), tenant="acme", resource_id="user-3") == []


async def test_search_can_exclude_one_thread(index: VectorIndex) -> None:
    current, earlier = point(axis(1), thread_id="now"), point(axis(1, 1), thread_id="before")
    await index.upsert([current, earlier])

    hits = await index.search(axis(1), tenant="acme", resource_id="user-1", exclude_thread_id="now")
    assert [h.id for h in hits] == [earlier.id]


async def test_upsert_is_idempotent_by_id(index: VectorIndex) -> None:
    first = point(axis(1), text="first")
    await index.upsert([first])
    await index.upsert([first])
    rewritten = VectorPoint(id=first.id, vector=axis(0, 1), payload={**first.payload, "text": "second"})
    await index.upsert([rewritten])

    assert await index.count(tenant="acme") == 1
    (hit,) = await index.search(axis(0, 1), tenant="acme", resource_id="user-1")
    assert hit.payload["text"] == "second"


async def test_delete_thread_removes_only_that_thread(index: VectorIndex) -> None:
    await index.upsert(
        [
            point(axis(1), thread_id="t1"),
            point(axis(1), thread_id="t1"),
            point(axis(1), thread_id="t2"),
            point(axis(1), thread_id="t1", tenant="globex"),
        ]
    )
    await index.delete_thread("acme", "t1")

    assert await index.count(tenant="acme", thread_id="t1") == 0
    assert await index.count(tenant="acme", thread_id="t2") == 1
    assert await index.count(tenant="globex", thread_id="t1") == 1


async def test_delete_resource_removes_only_that_resource(index: VectorIndex) -> None:
    await index.upsert(
        [
            point(axis(1), resource_id="user-1", thread_id="a"),
            point(axis(1), resource_id="user-1", thread_id="b"),
            point(axis(1), resource_id="user-2", thread_id="c"),
            point(axis(1), resource_id="user-1", tenant="globex"),
        ]
    )
    await index.delete_resource("acme", "user-1")

    assert await index.count(tenant="acme", resource_id="user-1") == 0
    assert await index.search(axis(1), tenant="acme", resource_id="user-1") == []
    assert await index.count(tenant="acme", resource_id="user-2") == 1
    assert await index.count(tenant="globex", resource_id="user-1") == 1


async def test_count_combines_filters(index: VectorIndex) -> None:
    await index.upsert(
        [
            point(axis(1), resource_id="r1", thread_id="a"),
            point(axis(1), resource_id="r1", thread_id="b"),
            point(axis(1), resource_id="r2", thread_id="c"),
        ]
    )
    assert await index.count(tenant="acme") == 3
    assert await index.count(tenant="acme", resource_id="r1") == 2
    assert await index.count(tenant="acme", resource_id="r1", thread_id="a") == 1
    assert await index.count(tenant="acme", resource_id="r2", thread_id="a") == 0


async def test_many_points_are_written_in_chunks(index: VectorIndex) -> None:
    await index.upsert([point(axis(1, i / 600)) for i in range(600)])
    assert await index.count(tenant="acme") == 600


async def test_invalid_points_are_rejected_alike(index: VectorIndex) -> None:
    good = point(axis(1))
    with pytest.raises(ValueError, match="dims"):
        await index.upsert([VectorPoint(id=good.id, vector=[1.0, 0.0], payload=good.payload)])
    with pytest.raises(ValueError, match="UUID"):
        await index.upsert([VectorPoint(id="obs-1", vector=good.vector, payload=good.payload)])
    with pytest.raises(ValueError, match="tenant"):
        payload = {k: v for k, v in good.payload.items() if k != "tenant"}
        await index.upsert([VectorPoint(id=good.id, vector=good.vector, payload=payload)])
    assert await index.count(tenant="acme") == 0


async def test_real_embeddings_rank_by_meaning(index: VectorIndex, embedder: Embedder) -> None:
    texts = ["My name is Alex", "The weather in Paris is sunny today", "I prefer tea over coffee"]
    vectors = await embedder.embed_async(texts)
    points = [point(v, text=t, thread_id=f"t{i}") for i, (t, v) in enumerate(zip(texts, vectors))]
    await index.upsert(points)

    (query,) = await embedder.embed_async(["What is my name?"])
    hits = await index.search(query, tenant="acme", resource_id="user-1")

    assert hits[0].payload["text"] == "My name is Alex"
    assert hits[0].score > hits[-1].score + 0.3


async def test_edge_data_survives_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "qdrant"
    first = EdgeVectorIndex(path, dim=DIM)
    await first.ensure()
    kept = point(axis(1), text="kept")
    await first.upsert([kept, point(axis(0, 1), thread_id="gone")])
    await first.delete_thread("acme", "gone")
    await first.close()
    assert not await first.ready()

    again = EdgeVectorIndex(path, dim=DIM)
    await again.ensure()
    try:
        assert await again.count(tenant="acme") == 1
        (hit,) = await again.search(axis(1), tenant="acme", resource_id="user-1")
        assert (hit.id, hit.payload["text"]) == (kept.id, "kept")
    finally:
        await again.close()


async def test_edge_recovers_writes_after_a_crash(tmp_path: Path) -> None:
    """A process killed without close() loses nothing acknowledged (the WAL replays)."""
    path = tmp_path / "qdrant"
    script = textwrap.dedent(
        f"""
        import asyncio, os, uuid
        from pathlib import Path
        from memgate_vectors import EdgeVectorIndex, VectorPoint

        async def main():
            index = EdgeVectorIndex(Path({str(path)!r}), dim=4)
            await index.ensure()
            payload = dict(tenant="acme", resource_id="r", thread_id="t", observation_id="o", text="x")
            await index.upsert([VectorPoint(str(uuid.uuid4()), [1.0, 0.0, 0.0, 0.0], payload)])
            os._exit(0)  # no close, no flush

        asyncio.run(main())
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)

    index = EdgeVectorIndex(path, dim=4)
    await index.ensure()
    try:
        assert await index.count(tenant="acme") == 1
    finally:
        await index.close()


async def test_edge_refuses_a_shard_of_another_dimension(tmp_path: Path) -> None:
    path = tmp_path / "qdrant"
    small = EdgeVectorIndex(path, dim=4)
    await small.ensure()
    await small.close()

    with pytest.raises(Exception, match="vector size"):
        await EdgeVectorIndex(path, dim=DIM).ensure()


async def test_edge_needs_ensure_before_use(tmp_path: Path) -> None:
    index = EdgeVectorIndex(tmp_path / "qdrant", dim=DIM)
    with pytest.raises(RuntimeError, match="ensure"):
        await index.count(tenant="acme")
