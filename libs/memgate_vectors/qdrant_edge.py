"""The vector index in-process: one Qdrant Edge shard in a directory.

Facts about qdrant-edge-py 0.9.0 this adapter is built on (measured):
- Every call holds the GIL for its whole duration, so a worker thread does not
  free the event loop while the engine works. Writes still go through
  `asyncio.to_thread` (in bounded chunks) so the loop runs between chunks, and
  so they stop blocking it if a later release lets go of the GIL.
- Only one process can open a shard: the WAL is locked exclusively.
- Without `optimize()` points stay in plain segments; searches filtered by the
  keyword indexes on tenant + resource_id still take well under a millisecond at
  tens of thousands of points, so searches and counts run inline.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import qdrant_edge as qe

from memgate_vectors.points import VectorHit, VectorPoint, checked_points
from memgate_vectors.port import KEYWORD_FIELDS, VECTOR_NAME, WRITE_CHUNK

T = TypeVar("T")


class EdgeVectorIndex:
    """`VectorIndex` on a Qdrant Edge shard stored at `path`."""

    def __init__(self, path: Path, dim: int = 384) -> None:
        self.path = Path(path)
        self.dim = dim
        self._shard: qe.EdgeShard | None = None
        # Serialises open, writes and close: no write reaches a shard being
        # closed, and writes stay one at a time should a later binding release
        # the GIL during calls (today each call holds it).
        self._lock = threading.Lock()

    async def ensure(self) -> None:
        await asyncio.to_thread(self._ensure)

    async def upsert(self, points: Sequence[VectorPoint]) -> None:
        checked = checked_points(points, self.dim)
        for start in range(0, len(checked), WRITE_CHUNK):
            await asyncio.to_thread(self._write, partial(_upsert_op, checked[start : start + WRITE_CHUNK]))

    async def search(
        self,
        vector: Sequence[float],
        *,
        tenant: str,
        resource_id: str,
        exclude_thread_id: str | None = None,
        limit: int = 10,
    ) -> list[VectorHit]:
        if limit <= 0:
            return []
        # Inline, not in a thread: sub-millisecond with the payload indexes, and a
        # thread hop would cost more than it saves while the engine holds the GIL.
        request = qe.QueryRequest(
            limit=limit,
            query=qe.Query.Nearest(list(vector), using=VECTOR_NAME),
            filter=_filter(tenant=tenant, resource_id=resource_id, exclude_thread_id=exclude_thread_id),
            with_payload=True,
        )
        return [
            VectorHit(id=str(p.id), score=p.score, payload=p.payload or {})
            for p in self._open_shard().query(request)
        ]

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
                self._shard = self._open()
            present = self._shard.info().payload_schema
            for field in KEYWORD_FIELDS:
                if field not in present:
                    self._shard.update(qe.UpdateOperation.create_field_index(field, _keyword_index(field)))

    def _open(self) -> qe.EdgeShard:
        config = qe.EdgeConfig(
            vectors={VECTOR_NAME: qe.EdgeVectorParams(size=self.dim, distance=qe.Distance.Cosine)}
        )
        # edge_config.json is written at creation; passing the config to load()
        # makes a shard of another dimension fail here rather than on first write.
        if (self.path / "edge_config.json").exists():
            return qe.EdgeShard.load(str(self.path), config)
        return qe.EdgeShard.create(str(self.path), config)

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


def _upsert_op(points: Sequence[VectorPoint]) -> qe.UpdateOperation:
    return qe.UpdateOperation.upsert_points(
        [qe.Point(p.id, {VECTOR_NAME: p.vector}, p.payload) for p in points]
    )


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
