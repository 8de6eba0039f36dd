"""The vector index in-process: one Qdrant Edge shard in a directory.

Facts about qdrant-edge-py 0.9.0 this adapter is built on (measured):
- Every call holds the GIL for its whole duration, so a worker thread does not
  free the event loop while the engine works. Writes still go through
  `asyncio.to_thread` (in bounded chunks) so the loop runs between chunks, and
  so they stop blocking it if a later release lets go of the GIL.
- Only one process can open a shard: the WAL is locked exclusively.
- Without `optimize()` points stay in plain segments, and a dense search scans the
  points that pass its filter. `optimize()` builds HNSW indexes but holds the GIL for
  about 3 s at 30,000 points, so memgate never runs it.
- Each filter condition costs more than the scoring: on a shard written to since it was
  opened, a dense ranking of 20,000 messages filtered by tenant, resource and kind took
  5.5 ms, by one SCOPE keyword 2.2 ms. Reading payloads costs about 5 us a point, so
  rankings return ids and scores only. At these costs searches and counts run inline (a
  worker thread would not free the loop: see above).
- Hybrid search runs in the engine: a dense and a sparse prefetch fused by
  `Fusion.Rrf`, which scores 1 / (k + position) like the server does.
- A shard created before hybrid search cannot be loaded with the sparse vector in
  its config ("incompatible with existing segments"), but the update operation
  `create_sparse_vector` adds it in place, and `update_vectors` fills it in for
  the points already stored without touching their dense vectors.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from functools import lru_cache, partial
from pathlib import Path
from typing import Any, TypeVar

import qdrant_edge as qe

from memgate_vectors import sparse
from memgate_vectors.points import (
    KEYWORD_TEXT,
    SCOPE,
    Rankings,
    VectorHit,
    VectorPoint,
    checked_points,
    keyword_text,
    scope,
    scope_of,
)
from memgate_vectors.port import (
    KEYWORD_FIELDS,
    RRF_K,
    SPARSE_VECTOR_NAME,
    VECTOR_NAME,
    WRITE_CHUNK,
    prefetch_limit,
)

T = TypeVar("T")
# Payloads are read without what only the index needs.
_PAYLOAD = qe.PayloadSelector.Exclude([KEYWORD_TEXT, SCOPE])
# Points written per call in a worker thread: the shard holds the GIL while it converts and
# stores them, so the event loop waits for the whole chunk. Writing 96 points (an observer
# batch at 100 req/s) stalled the loop up to 5.3 ms at 256 a chunk, 2.6 ms at 32, for 15%
# more time in all. Writing inline instead, 8 points a call with a yield to the loop between
# calls (and the observer's message points built 16 between yields), cut the loop's time in
# stalls over 3 ms by 30%, yet requests on the bench's hot thread got slower (p90 15 -> 20 ms
# at 100 req/s, medians of six rounds side by side): a worker thread also runs while the
# loop waits on its sockets, and inline all of the work is the loop's.
EDGE_WRITE_CHUNK = 32
log = logging.getLogger("memgate.vectors")


class EdgeVectorIndex:
    """`VectorIndex` on a Qdrant Edge shard stored at `path`."""

    def __init__(self, path: Path, dim: int = 384) -> None:
        self.path = Path(path)
        self.dim = dim
        self.hybrid = False  # decided by ensure()
        self._shard: qe.EdgeShard | None = None
        # Serialises open, writes and close: no write reaches a shard being
        # closed, and writes stay one at a time should a later binding release
        # the GIL during calls (today each call holds it).
        self._lock = threading.Lock()

    async def ensure(self) -> None:
        await asyncio.to_thread(self._ensure)

    async def upsert(self, points: Sequence[VectorPoint]) -> None:
        checked = checked_points(points, self.dim)
        for start in range(0, len(checked), EDGE_WRITE_CHUNK):
            chunk = checked[start : start + EDGE_WRITE_CHUNK]
            await asyncio.to_thread(self._write, partial(_upsert_op, chunk, hybrid=self.hybrid))

    async def search(
        self,
        vector: Sequence[float],
        *,
        tenant: str,
        resource_id: str,
        exclude_thread_id: str | None = None,
        limit: int = 10,
        query_text: str | None = None,
    ) -> list[VectorHit]:
        if limit <= 0:
            return []
        where = _filter(tenant=tenant, resource_id=resource_id, exclude_thread_id=exclude_thread_id)
        dense = qe.Query.Nearest(list(vector), using=VECTOR_NAME)
        terms = sparse.query_vector(query_text) if query_text and self.hybrid else None
        if terms is not None and terms.indices:
            # The filter goes into each prefetch: both rankings see only this
            # tenant's resource, so fusion never sees (or counts) anyone else's points.
            n = prefetch_limit(limit)
            keywords = qe.Query.Nearest(qe.SparseVector(terms.indices, terms.values), using=SPARSE_VECTOR_NAME)
            request = qe.QueryRequest(
                limit=limit,
                prefetches=[qe.Prefetch(n, query=dense, filter=where), qe.Prefetch(n, query=keywords, filter=where)],
                query=qe.Fusion.Rrf(k=RRF_K),  # type: ignore[arg-type]  # (its stub omits Fusion's variants)
                with_payload=_PAYLOAD,
            )
        else:
            request = qe.QueryRequest(limit=limit, query=dense, filter=where, with_payload=_PAYLOAD)
        # Inline, not in a thread: the engine holds the GIL either way (module docstring).
        return [_hit(p) for p in self._open_shard().query(request)]

    async def rankings(
        self, vector: Sequence[float] | None, *, tenant: str, resource_id: str, query_text: str, limit: int,
        messages: bool | None = None,
    ) -> Rankings:
        if limit <= 0:
            return Rankings([], [])
        where = _scoped(tenant, resource_id, messages)
        shard = self._open_shard()
        dense = shard.query(qe.QueryRequest(
            limit=limit, query=qe.Query.Nearest(list(vector), using=VECTOR_NAME), filter=where, with_payload=False,
        )) if vector is not None else []
        terms = sparse.query_vector(query_text) if self.hybrid else None
        keyword = shard.query(qe.QueryRequest(
            limit=limit, filter=where, with_payload=False,
            query=qe.Query.Nearest(qe.SparseVector(terms.indices, terms.values), using=SPARSE_VECTOR_NAME),
        )) if terms is not None and terms.indices else []
        return Rankings([_ranked(p) for p in dense], [_ranked(p) for p in keyword])

    async def payloads(self, ids: Sequence[str], *, tenant: str) -> dict[str, dict[str, Any]]:
        if not ids:
            return {}
        records = self._open_shard().retrieve(list(ids), _PAYLOAD, False)
        # (each read of `record.payload` converts it anew: once per record)
        found = ((_point_id(r.id), r.payload) for r in records)
        return {i: payload for i, payload in found if payload and payload.get("tenant") == tenant}

    async def delete(self, ids: Sequence[str]) -> None:
        if ids:
            await asyncio.to_thread(self._write, partial(qe.UpdateOperation.delete_points, list(ids)))

    async def delete_thread(self, tenant: str, thread_id: str) -> None:
        where = _filter(tenant=tenant, thread_id=thread_id)
        await asyncio.to_thread(self._write, partial(qe.UpdateOperation.delete_points_by_filter, where))

    async def delete_resource(self, tenant: str, resource_id: str) -> None:
        where = _filter(tenant=tenant, resource_id=resource_id)
        await asyncio.to_thread(self._write, partial(qe.UpdateOperation.delete_points_by_filter, where))

    async def count(
        self, *, tenant: str, resource_id: str | None = None, thread_id: str | None = None
    ) -> int:
        where = _filter(tenant=tenant, resource_id=resource_id, thread_id=thread_id)
        return self._open_shard().count(qe.CountRequest(exact=True, filter=where))

    async def ready(self) -> bool:
        return self._shard is not None

    async def optimize(self) -> bool:
        """Build HNSW indexes over the stored points (not part of the port).

        Takes minutes at 100k points and holds the GIL throughout, blocking the
        whole process: run it at start-up or in maintenance, never per request.
        """
        return await asyncio.to_thread(self._locked, lambda shard: shard.optimize())

    async def close(self) -> None:
        await asyncio.to_thread(self._close)

    # -- blocking parts, run in a worker thread -----------------------------

    def _ensure(self) -> None:
        with self._lock:
            if self._shard is None:
                self._shard, self.hybrid = self._open()
            present = self._shard.info().payload_schema
            for field in KEYWORD_FIELDS:
                if field not in present:
                    self._shard.update(qe.UpdateOperation.create_field_index(field, _keyword_index(field)))
            _backfill_scope(self._shard)
            if self.hybrid:
                _backfill_sparse(self._shard)

    def _open(self) -> tuple[qe.EdgeShard, bool]:
        """The shard and whether it has the sparse vector (adding it to an older shard)."""
        dense = {VECTOR_NAME: qe.EdgeVectorParams(size=self.dim, distance=qe.Distance.Cosine)}
        hybrid = qe.EdgeConfig(vectors=dense, sparse_vectors={SPARSE_VECTOR_NAME: _sparse_params()})
        # edge_config.json is written at creation; passing the config to load()
        # makes a shard of another dimension fail here rather than on first write.
        # Its payloads are the text of every message and observation: its owner's only,
        # whatever the umask and the data dir's mode (also for a shard made before this).
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            self.path.chmod(0o700)
        except PermissionError:  # (not ours to change: a volume mounted so; the engine may still open it)
            log.warning("could not make %s its owner's only (mode 0700)", self.path)
        if not (self.path / "edge_config.json").exists():
            return qe.EdgeShard.create(str(self.path), hybrid), True
        try:
            return qe.EdgeShard.load(str(self.path), hybrid), True
        except Exception:  # the engine raises plain Exception for any mismatch: find out which below
            pass
        # Made before hybrid search (or incompatible: then this load raises the
        # real reason, e.g. another vector size). A dense-only config inherits
        # whatever sparse vectors the shard has.
        shard = qe.EdgeShard.load(str(self.path), qe.EdgeConfig(vectors=dense))
        try:
            _add_sparse_vector(shard)
        except Exception as exc:  # an engine that cannot: keep serving, dense-only
            log.warning(
                "vector index at %s has no sparse vector and it could not be added (%s): "
                "searching by meaning only, without keyword matching",
                self.path,
                exc,
            )
            return shard, False
        log.info("vector index at %s: added the sparse vector for hybrid search", self.path)
        return shard, True

    def _write(self, build: Callable[[], qe.UpdateOperation]) -> None:
        # The operation is built in this thread too: converting points is Python work.
        self._locked(lambda shard: shard.update(build()))

    def _locked(self, action: Callable[[qe.EdgeShard], T]) -> T:
        with self._lock:
            return action(self._open_shard())

    def _close(self) -> None:
        with self._lock:
            shard, self._shard = self._shard, None
            if shard is not None:
                shard.flush()
                shard.close()

    def _open_shard(self) -> qe.EdgeShard:
        if self._shard is None:
            raise RuntimeError(f"vector index at {self.path} is not open: call ensure() first")
        return self._shard


def _hit(point: Any) -> VectorHit:
    return VectorHit(id=_point_id(point.id), score=point.score, payload=point.payload or {})


def _ranked(point: Any) -> VectorHit:
    return VectorHit(id=_point_id(point.id), score=point.score, payload={})


def _point_id(value: Any) -> str:
    """A point id as memgate writes it. The binding returns a `uuid.UUID`, whose str() costs
    1.6 us, and a recall reads about 800 of them, mostly the same from turn to turn: 0.2 us
    each from a cache keyed by the UUID's number (about 4 MB when full)."""
    return _uuid_text(value.int) if isinstance(value, uuid.UUID) else str(value)


@lru_cache(maxsize=16_384)
def _uuid_text(number: int) -> str:
    return str(uuid.UUID(int=number))


def _upsert_op(points: Sequence[VectorPoint], *, hybrid: bool) -> qe.UpdateOperation:
    return qe.UpdateOperation.upsert_points([_point(p, hybrid=hybrid) for p in points])


def _point(point: VectorPoint, *, hybrid: bool) -> qe.Point:
    vectors: dict[str, Any] = {VECTOR_NAME: point.vector}
    if hybrid:
        terms = sparse.document_vector(keyword_text(point.payload))
        # A text without terms stores no sparse vector: the engine leaves such
        # points out of its IDF statistics either way, and so then does every adapter.
        if terms.indices:
            vectors[SPARSE_VECTOR_NAME] = qe.SparseVector(terms.indices, terms.values)
    return qe.Point(point.id, vectors, point.payload)


def _sparse_params() -> qe.EdgeSparseVectorParams:
    # IDF: the engine multiplies query terms by their inverse document frequency,
    # completing the BM25 weights memgate_vectors.sparse stores.
    return qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)


def _add_sparse_vector(shard: qe.EdgeShard) -> None:
    shard.update(qe.UpdateOperation.create_sparse_vector(SPARSE_VECTOR_NAME, qe.Modifier.Idf))


def _backfill_sparse(shard: qe.EdgeShard) -> int:
    """Give the sparse vector to stored points that lack it (written before hybrid search).

    Resumable: a crash midway leaves the rest lacking, and the next ensure()
    continues. Points whose text has no terms stay without one (and are looked
    at again by each ensure(), cheaply). Returns how many points were filled in.
    """
    lacking = qe.Filter(must_not=[qe.HasVectorCondition(SPARSE_VECTOR_NAME)])
    filled = 0
    for records in _scroll(shard, lacking):
        updates = []
        for record in records:
            terms = sparse.document_vector(keyword_text(record.payload or {}))
            if terms.indices:
                updates.append(
                    qe.PointVectors(record.id, {SPARSE_VECTOR_NAME: qe.SparseVector(terms.indices, terms.values)})
                )
        if updates:
            shard.update(qe.UpdateOperation.update_vectors(updates, condition=lacking))
            filled += len(updates)
    if filled:
        log.info("vector index: added keyword vectors to %d points stored before hybrid search", filled)
    return filled


def _backfill_scope(shard: qe.EdgeShard) -> int:
    """Give SCOPE to stored points that lack it (written before it existed); resumable."""
    filled = 0
    for records in _scroll(shard, qe.Filter(must=[qe.IsEmptyCondition(SCOPE)])):
        by_scope: dict[str, list[Any]] = {}
        for record in records:
            by_scope.setdefault(scope_of(record.payload), []).append(record.id)
        for value, ids in by_scope.items():
            shard.update(qe.UpdateOperation.set_payload(ids, {SCOPE: value}))
        filled += len(records)
    if filled:
        log.info("vector index: added the scope to %d points stored before it existed", filled)
    return filled


def _scroll(shard: qe.EdgeShard, where: qe.Filter) -> Iterator[list[Any]]:
    """The points matching `where` with their payloads, WRITE_CHUNK at a time (by id, so
    a batch the caller updates out of `where` does not shift the next one)."""
    offset = None
    while True:
        records, offset = shard.scroll(
            qe.ScrollRequest(offset=offset, limit=WRITE_CHUNK, filter=where, with_payload=True, with_vector=False)
        )
        yield records
        if offset is None:
            return


def _keyword_index(field: str) -> qe.KeywordIndexParams:
    # is_tenant lets the engine keep each tenant's points together on disk.
    return qe.KeywordIndexParams(is_tenant=field == "tenant")


def _filter(
    *,
    tenant: str,
    resource_id: str | None = None,
    thread_id: str | None = None,
    exclude_thread_id: str | None = None,
) -> qe.Filter:
    keys = {"tenant": tenant, "resource_id": resource_id, "thread_id": thread_id}
    must: list[Any] = [
        qe.FieldCondition(key, match=qe.MatchValue(value)) for key, value in keys.items() if value is not None
    ]
    must_not: list[Any] = []
    if exclude_thread_id is not None:
        must_not.append(qe.FieldCondition("thread_id", match=qe.MatchValue(exclude_thread_id)))
    return qe.Filter(must=must, must_not=must_not or None)


def _scoped(tenant: str, resource_id: str, messages: bool | None) -> qe.Filter:
    """A resource's messages (True), its other points (False) or all: by SCOPE alone."""
    scopes = [scope(tenant, resource_id, message=m) for m in ((messages,) if messages is not None else (True, False))]
    match = qe.MatchValue(scopes[0]) if len(scopes) == 1 else qe.MatchAny(scopes)
    return qe.Filter(must=[qe.FieldCondition(SCOPE, match=match)])
