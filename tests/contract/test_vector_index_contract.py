"""One contract for every VectorIndex adapter.

Runs against Qdrant Edge (in a temp dir), qdrant-client's local mode injected into
ServerVectorIndex, and a real Qdrant server via testcontainers where Docker is
reachable (skipped with the reason otherwise).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import subprocess
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from qdrant_client import AsyncQdrantClient

from memgate_vectors import (
    KEYWORD_TEXT,
    EdgeVectorIndex,
    Embedder,
    Rankings,
    ServerVectorIndex,
    VectorIndex,
    VectorPoint,
    sparse,
)
from memgate_vectors.port import RRF_K, prefetch_limit

# Local mode has no payload indexes and says so each time ensure() creates one.
pytestmark = pytest.mark.filterwarnings("ignore:Payload indexes have no effect:UserWarning")

DIM = 384


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
    assert index.hybrid  # a new index is always made with its sparse vector
    await index.ensure()
    assert await index.ready() and index.hybrid
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


# -- hybrid search: dense + BM25 sparse, fused by RRF ------------------------------


def rrf(*rankings: list[str]) -> dict[str, float]:
    """Reciprocal rank fusion as both engines do it: 1 / (k + position), positions from 0."""
    fused: dict[str, float] = {}
    for ranking in rankings:
        for position, id_ in enumerate(ranking):
            fused[id_] = fused.get(id_, 0.0) + 1.0 / (RRF_K + position)
    return fused


def reference_hybrid(points: list[VectorPoint], query: list[float], text: str, limit: int) -> list[tuple[str, float]]:
    """What a hybrid search over `points` (all of the index) must return, computed independently."""
    cosine = {p.id: sum(a * b for a, b in zip(p.vector, query)) for p in points}
    docs = {p.id: sparse.document_vector(p.payload["text"]) for p in points}
    docs = {id_: dict(zip(d.indices, d.values)) for id_, d in docs.items() if d.indices}
    n = len(docs)  # IDF counts the points that have a sparse vector

    def idf(term: int) -> float:
        df = sum(term in d for d in docs.values())
        return math.log((n - df + 0.5) / (df + 0.5) + 1)

    terms = sparse.query_vector(text).indices
    bm25 = {id_: sum(idf(t) * d[t] for t in terms if t in d) for id_, d in docs.items()}
    bm25 = {id_: score for id_, score in bm25.items() if score > 0}
    for scores in (cosine, bm25):  # the reference is exact only without ties (engines break them their own way)
        assert len(set(round(v, 6) for v in scores.values())) == len(scores)
    k = prefetch_limit(limit)
    dense_ranking = sorted(cosine, key=cosine.__getitem__, reverse=True)[:k]
    sparse_ranking = sorted(bm25, key=bm25.__getitem__, reverse=True)[:k]
    fused = rrf(dense_ranking, sparse_ranking)
    assert len(set(round(v, 9) for v in fused.values())) == len(fused)  # no ties after fusion either
    return sorted(fused.items(), key=lambda item: item[1], reverse=True)[:limit]


TEA_TEXTS = [
    "tea tea tea with lemon",
    "green tea in the morning",
    "coffee with milk",
    "herbal tea, no sugar, ginger and honey",
    "tea or coffee after lunch, with lemon cake",
    "espresso",
    "",  # no terms: no sparse vector
    "lemon cake",
]


async def test_hybrid_ranking_is_rrf_of_dense_and_bm25(index: VectorIndex) -> None:
    """Every adapter returns exactly the reference ranking and scores (so they agree)."""
    points = [point(axis(1, 0.15 * i + 0.05), text=t) for i, t in enumerate(TEA_TEXTS)]
    await index.upsert(points)

    for limit in (3, 8):
        hits = await index.search(axis(1), tenant="acme", resource_id="user-1", limit=limit, query_text="Lemon teas?")
        expected = reference_hybrid(points, axis(1), "Lemon teas?", limit)
        assert [h.id for h in hits] == [id_ for id_, _ in expected]
        assert [h.score for h in hits] == pytest.approx([score for _, score in expected], rel=1e-5)
    # The keyword ranking changed the order: dense alone ranks by angle only.
    dense = await index.search(axis(1), tenant="acme", resource_id="user-1", limit=8)
    assert [h.id for h in dense] == [p.id for p in points]
    assert [h.id for h in hits] != [h.id for h in dense]


async def test_hybrid_finds_a_rare_keyword_that_dense_ranks_low(index: VectorIndex, embedder: Embedder) -> None:
    texts = [
        "Order ZX-4471 is stuck at customs in Rotterdam",
        "Parcel XZ-4417 was held up by the courier",
        "Package ZX4741 is running late",
        "Delivery of XZ-7144 is behind schedule",
        "The ZK-1447 shipment arrives late",
        "User prefers tea over coffee",
    ]
    vectors = await embedder.embed_async(texts)
    await index.upsert([point(v, text=t, thread_id=f"t{i}") for i, (t, v) in enumerate(zip(texts, vectors))])
    question = "Why is my order ZX-4471 delayed?"
    (query,) = await embedder.embed_async([question])

    dense = await index.search(query, tenant="acme", resource_id="user-1", limit=3)
    hybrid = await index.search(query, tenant="acme", resource_id="user-1", limit=3, query_text=question)

    assert texts[0] not in [h.payload["text"] for h in dense]  # similar-looking numbers win by meaning
    assert hybrid[0].payload["text"] == texts[0]


async def test_without_terms_search_is_dense_only(index: VectorIndex) -> None:
    points = [point(axis(1, 0.1 * i), text=t) for i, t in enumerate(["lemon tea", "black coffee", "espresso"])]
    await index.upsert(points)
    dense = await index.search(axis(1), tenant="acme", resource_id="user-1")
    for text in (None, "", "  ", "What is it? Is it the...?"):  # nothing, blanks, only stopwords
        hits = await index.search(axis(1), tenant="acme", resource_id="user-1", query_text=text)
        assert [(h.id, h.score) for h in hits] == [(h.id, h.score) for h in dense]
    assert dense[0].score == pytest.approx(1.0, abs=1e-4)  # cosine, not a fused score


async def test_hybrid_filters_apply_to_both_rankings(index: VectorIndex) -> None:
    """Points of other tenants, resources or the excluded thread never take a place in either ranking."""
    mine = point(axis(1, 0.3), text="order ZX-4471 delayed", thread_id="before")
    other = point(axis(0, 1), text="black coffee", thread_id="before")
    # Each of these is a better match than `mine` by meaning and by keyword alike.
    hidden = [
        point(axis(1), text="order ZX-4471 ZX-4471 delayed", tenant="globex"),
        point(axis(1), text="order ZX-4471 ZX-4471 delayed", resource_id="user-2"),
        point(axis(1), text="order ZX-4471 ZX-4471 delayed", thread_id="now"),
    ]
    await index.upsert([mine, other, *hidden])

    hits = await index.search(
        axis(1), tenant="acme", resource_id="user-1", exclude_thread_id="now", query_text="ZX-4471"
    )

    assert [h.id for h in hits] == [mine.id, other.id]
    # First in both rankings: had a hidden point been ranked before it, it would score 2 / 61.
    assert hits[0].score == pytest.approx(2 / RRF_K, rel=1e-5)
    assert hits[1].score == pytest.approx(1 / (RRF_K + 1), rel=1e-5)  # second by meaning, no keyword
    for tenant, resource in (("globex", "user-1"), ("acme", "user-2")):
        (found,) = await index.search(axis(1), tenant=tenant, resource_id=resource, query_text="ZX-4471")
        assert found.score == pytest.approx(2 / RRF_K, rel=1e-5)


async def test_rewriting_a_point_replaces_its_keywords(index: VectorIndex) -> None:
    first = point(axis(1), text="order ZX-4471")
    await index.upsert([first])
    await index.upsert([first])
    search = functools.partial(index.search, axis(1), tenant="acme", resource_id="user-1", query_text="ZX-4471")
    (hit,) = await search()
    assert hit.score == pytest.approx(2 / RRF_K, rel=1e-5)  # found by meaning and by keyword

    await index.upsert([VectorPoint(id=first.id, vector=axis(1), payload={**first.payload, "text": "black coffee"})])

    assert await index.count(tenant="acme") == 1
    (hit,) = await search()
    assert hit.score == pytest.approx(1 / RRF_K, rel=1e-5)  # by meaning only: the old keywords are gone
    (hit,) = await index.search(axis(1), tenant="acme", resource_id="user-1", query_text="black coffee")
    assert hit.score == pytest.approx(2 / RRF_K, rel=1e-5)


async def test_deletes_remove_points_from_hybrid_search(index: VectorIndex) -> None:
    keep = point(axis(0, 1), text="tea", thread_id="t2", resource_id="user-1")
    await index.upsert(
        [
            point(axis(1), text="order ZX-4471", thread_id="t1"),
            point(axis(1), text="order ZX-4471", resource_id="user-9", thread_id="t9"),
            keep,
        ]
    )
    await index.delete_thread("acme", "t1")
    await index.delete_resource("acme", "user-9")

    for resource in ("user-1", "user-9"):
        hits = await index.search(axis(1), tenant="acme", resource_id=resource, query_text="order ZX-4471")
        assert [h.id for h in hits] == ([keep.id] if resource == "user-1" else [])
    (hit,) = await index.search(axis(1), tenant="acme", resource_id="user-1", query_text="ZX-4471")
    assert hit.score == pytest.approx(1 / RRF_K, rel=1e-5)  # no keyword match left to add


async def test_hybrid_search_respects_limit(index: VectorIndex) -> None:
    await index.upsert([point(axis(1, i / 50), text=f"note {i} about lemon tea") for i in range(50)])
    for limit in (0, 1, 7, 60):
        hits = await index.search(axis(1), tenant="acme", resource_id="user-1", limit=limit, query_text="lemon tea")
        assert len(hits) == min(limit, 50)
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


# -- indexes made before hybrid search ---------------------------------------------


def legacy_points() -> list[VectorPoint]:
    return [
        point(axis(1), text="black coffee", thread_id="a"),
        point(axis(1, 0.5), text="order ZX-4471 delayed", thread_id="b"),
        point(axis(1, 1), text="", thread_id="c"),
    ]


def make_legacy_edge_shard(path: Path, points: list[VectorPoint]) -> None:
    """A shard as the adapter wrote it before hybrid search: one dense vector, no sparse one."""
    import qdrant_edge as qe

    config = qe.EdgeConfig(vectors={"dense": qe.EdgeVectorParams(size=DIM, distance=qe.Distance.Cosine)})
    shard = qe.EdgeShard.create(str(path), config)
    for field in ("tenant", "resource_id", "thread_id"):
        shard.update(qe.UpdateOperation.create_field_index(field, qe.KeywordIndexParams(is_tenant=field == "tenant")))
    shard.update(qe.UpdateOperation.upsert_points([qe.Point(p.id, {"dense": p.vector}, p.payload) for p in points]))
    shard.flush()
    shard.close()


async def assert_migrated(index: VectorIndex, points: list[VectorPoint]) -> None:
    assert index.hybrid
    assert await index.count(tenant="acme") == len(points)
    hits = await index.search(axis(1), tenant="acme", resource_id="user-1", query_text="ZX-4471")
    # The old point now has keywords too: first by keyword, second by meaning.
    assert hits[0].id == points[1].id
    assert hits[0].score == pytest.approx(1 / RRF_K + 1 / (RRF_K + 1), rel=1e-5)
    # The old points gained their scope: rankings (filtered by it alone) find them.
    ranked = await index.rankings(axis(1), tenant="acme", resource_id="user-1", query_text="coffee", limit=10,
                                  messages=False)
    assert {h.id for h in ranked.dense} == {p.id for p in points} and [h.id for h in ranked.keyword] == [points[0].id]
    assert (await index.rankings(axis(1), tenant="acme", resource_id="user-1", query_text="coffee", limit=10,
                                 messages=True)).dense == []
    # New writes get both vectors.
    new = point(axis(0, 1), text="order ZX-9000")
    await index.upsert([new])
    (hit, *_) = await index.search(axis(0, 1), tenant="acme", resource_id="user-1", query_text="ZX-9000")
    assert hit.id == new.id and hit.score == pytest.approx(2 / RRF_K, rel=1e-5)


async def test_edge_adds_the_sparse_vector_to_an_older_shard(tmp_path: Path) -> None:
    path = tmp_path / "qdrant"
    points = legacy_points()
    make_legacy_edge_shard(path, points)

    index = EdgeVectorIndex(path, dim=DIM)
    await index.ensure()
    try:
        await assert_migrated(index, points)
    finally:
        await index.close()

    again = EdgeVectorIndex(path, dim=DIM)  # migrated once: opens as a hybrid shard
    await again.ensure()
    try:
        assert again.hybrid and await again.count(tenant="acme") == len(points) + 1
    finally:
        await again.close()


async def test_edge_keeps_an_older_shard_dense_only_if_it_cannot_add_sparse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import memgate_vectors.qdrant_edge as edge_module

    def unsupported(shard: Any) -> None:
        raise RuntimeError("not supported by this engine")

    path = tmp_path / "qdrant"
    points = legacy_points()
    make_legacy_edge_shard(path, points)
    monkeypatch.setattr(edge_module, "_add_sparse_vector", unsupported)

    index = EdgeVectorIndex(path, dim=DIM)
    with caplog.at_level(logging.WARNING, logger="memgate.vectors"):
        await index.ensure()
    try:
        assert not index.hybrid
        assert "keyword matching" in caplog.text
        new = point(axis(1, 0.2), text="order ZX-9000")
        await index.upsert([new])  # writes only the dense vector
        dense = await index.search(axis(1), tenant="acme", resource_id="user-1")
        hybrid = await index.search(axis(1), tenant="acme", resource_id="user-1", query_text="ZX-4471")
        assert [(h.id, h.score) for h in hybrid] == [(h.id, h.score) for h in dense]
        assert await index.count(tenant="acme") == len(points) + 1
    finally:
        await index.close()


async def test_server_adds_the_sparse_vector_to_an_older_collection() -> None:
    from qdrant_client import models as qm

    client = AsyncQdrantClient(location=":memory:")
    points = legacy_points()
    await client.create_collection(
        "memgate_observations", vectors_config={"dense": qm.VectorParams(size=DIM, distance=qm.Distance.COSINE)}
    )
    await client.upsert(
        "memgate_observations",
        points=[qm.PointStruct(id=p.id, vector={"dense": p.vector}, payload=p.payload) for p in points],
    )
    index = ServerVectorIndex(":memory:", dim=DIM, client=client)
    try:
        await index.ensure()
        await assert_migrated(index, points)
        await index.ensure()  # nothing left to fill in
        assert index.hybrid
    finally:
        await client.close()


async def test_server_keeps_an_older_collection_dense_only_if_it_cannot_add_sparse(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from qdrant_client import models as qm

    client = AsyncQdrantClient(location=":memory:")
    await client.create_collection(
        "memgate_observations", vectors_config={"dense": qm.VectorParams(size=DIM, distance=qm.Distance.COSINE)}
    )

    async def unsupported(*args: Any, **kwargs: Any) -> None:
        raise ValueError("404 Not Found")  # what a server before 1.18 answers, roughly

    monkeypatch.setattr(client, "create_vector_name", unsupported)
    index = ServerVectorIndex(":memory:", dim=DIM, client=client)
    try:
        with caplog.at_level(logging.WARNING, logger="memgate.vectors"):
            await index.ensure()
        assert not index.hybrid and "keyword matching" in caplog.text
        p = point(axis(1), text="order ZX-4471")
        await index.upsert([p])
        (hit,) = await index.search(axis(1), tenant="acme", resource_id="user-1", query_text="ZX-4471")
        assert hit.id == p.id and hit.score == pytest.approx(1.0, abs=1e-4)
    finally:
        await client.close()


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
    await asyncio.to_thread(subprocess.run, [sys.executable, "-c", script], check=True, timeout=60)

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


async def test_rankings_are_the_dense_and_the_bm25_ranking_unfused(index: VectorIndex) -> None:
    """Every adapter returns both rankings with their own scores, within the resource."""
    points = [point(axis(1, 0.15 * i + 0.05), text=t) for i, t in enumerate(TEA_TEXTS)]
    await index.upsert([*points, point(axis(1), text="tea tea lemon", resource_id="user-2")])
    rankings = await index.rankings(axis(1), tenant="acme", resource_id="user-1", query_text="Lemon teas?", limit=4)

    cosine = {p.id: sum(a * b for a, b in zip(p.vector, axis(1))) for p in points}
    assert [h.id for h in rankings.dense] == sorted(cosine, key=cosine.__getitem__, reverse=True)[:4]
    assert [h.score for h in rankings.dense] == pytest.approx([cosine[h.id] for h in rankings.dense], rel=1e-5)
    expected = reference_hybrid(points, axis(1), "Lemon teas?", 8)  # (asserts no ties)
    docs = {p.id: p.payload["text"] for p in points}
    assert all({"tea", "lemon"} & set(docs[h.id].replace(",", "").split()) for h in rankings.keyword)
    assert len(rankings.keyword) == 4 and expected  # four texts mention tea or lemon
    assert [h.score for h in rankings.keyword] == sorted((h.score for h in rankings.keyword), reverse=True)
    assert all(h.payload == {} for h in [*rankings.dense, *rankings.keyword])  # ids and scores only

    no_terms = await index.rankings(axis(1), tenant="acme", resource_id="user-1", query_text="the and of", limit=4)
    assert no_terms.keyword == [] and len(no_terms.dense) == 4
    words_only = await index.rankings(None, tenant="acme", resource_id="user-1", query_text="Lemon teas?", limit=4)
    assert words_only.dense == [] and [h.id for h in words_only.keyword] == [h.id for h in rankings.keyword]


async def test_keyword_text_is_what_the_keyword_vector_is_made_of(index: VectorIndex) -> None:
    reply = point(axis(1), text="Yes, last year!", keyword_text="Did you paint the lake sunrise?\nYes, last year!")
    other = point(axis(0, 1), text="I like sunrise walks")
    await index.upsert([reply, other])
    rankings = await index.rankings(axis(1), tenant="acme", resource_id="user-1", query_text="lake painting", limit=5)
    assert [h.id for h in rankings.keyword] == [reply.id]
    assert (await index.payloads([reply.id], tenant="acme"))[reply.id]["text"] == "Yes, last year!"


async def test_payloads_are_read_by_id_within_the_tenant(index: VectorIndex) -> None:
    mine = point(axis(1), text="lemon tea", keyword_text="lemon tea for breakfast")
    theirs = point(axis(1), text="green tea", tenant="globex")
    await index.upsert([mine, theirs])
    missing = str(uuid.uuid4())
    found = await index.payloads([mine.id, theirs.id, missing], tenant="acme")
    assert list(found) == [mine.id]  # another tenant's point and an unknown id are left out
    assert found[mine.id]["text"] == "lemon tea" and KEYWORD_TEXT not in found[mine.id]
    assert await index.payloads([], tenant="acme") == {}


async def test_delete_by_ids_removes_only_those(index: VectorIndex) -> None:
    points = [point(axis(1, i + 1), text=f"fact {i}") for i in range(4)]
    await index.upsert(points)
    await index.delete([points[0].id, points[2].id, str(uuid.uuid4())])  # an unknown id is ignored
    left = await index.search(axis(1), tenant="acme", resource_id="user-1", limit=10)
    assert sorted(h.id for h in left) == sorted([points[1].id, points[3].id])
    await index.delete([])
    assert await index.count(tenant="acme") == 2


async def test_rankings_can_keep_to_messages_or_to_the_rest(index: VectorIndex) -> None:
    message = point(axis(1), text="lemon tea for breakfast", kind="message")
    observation = point(axis(1, 0.1), text="Likes lemon tea.", kind="observation")
    legacy = point(axis(1, 0.2), text="Drinks lemon tea.")  # written before points had a kind
    await index.upsert([message, observation, legacy])

    def ids(rankings: Rankings) -> tuple[set[str], set[str]]:
        return {h.id for h in rankings.dense}, {h.id for h in rankings.keyword}

    ask = dict(tenant="acme", resource_id="user-1", query_text="lemon tea", limit=10)
    assert ids(await index.rankings(axis(1), messages=True, **ask)) == ({message.id}, {message.id})
    others = {observation.id, legacy.id}
    assert ids(await index.rankings(axis(1), messages=False, **ask)) == (others, others)
    assert ids(await index.rankings(axis(1), **ask)) == ({message.id, *others}, {message.id, *others})
