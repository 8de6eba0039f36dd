"""The vector index on a Qdrant server, through qdrant-client's async REST client.

Hybrid search is one `query_points` call: a dense and a sparse prefetch fused by
parametrised RRF (`RrfQuery`, server 1.16+). A collection made before hybrid
search gains its sparse vector through `create_vector_name` (server 1.18+); an
older server keeps such a collection dense-only and says so in the log.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from qdrant_client import AsyncQdrantClient
from qdrant_client import models as qm
from qdrant_client.http.exceptions import UnexpectedResponse

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

log = logging.getLogger("memgate.vectors")
# IDF: the server multiplies query terms by their inverse document frequency,
# completing the BM25 weights memgate_vectors.sparse stores.
_SPARSE_PARAMS = qm.SparseVectorParams(modifier=qm.Modifier.IDF)
# Payloads are read without what only the index needs.
_PAYLOAD = qm.PayloadSelectorExclude(exclude=[KEYWORD_TEXT, SCOPE])
# Points that have no keyword vector yet: written before hybrid search (or with no terms).
_LACKING_SPARSE = qm.Filter(must_not=[qm.HasVectorCondition(has_vector=SPARSE_VECTOR_NAME)])


class ServerVectorIndex:
    """`VectorIndex` on one collection of a Qdrant server.

    Pass `client` to use one made elsewhere (tests inject qdrant-client's local
    mode, `AsyncQdrantClient(location=":memory:")`); its owner closes it.
    """

    def __init__(
        self,
        url: str,
        collection: str = "memgate_observations",
        dim: int = 384,
        api_key: str | None = None,
        *,
        client: AsyncQdrantClient | None = None,
    ) -> None:
        self.collection = collection
        self.dim = dim
        self.hybrid = False  # decided by ensure()
        self._owns_client = client is None
        # check_compatibility=False: the check is a blocking HTTP GET in this
        # constructor (stalling the event loop while the server is down); the
        # contract suite pins the server version we test against instead.
        self._client = client if client is not None else AsyncQdrantClient(
            url=url, api_key=api_key, check_compatibility=False
        )

    async def ensure(self) -> None:
        client, name = self._client, self.collection
        if not await client.collection_exists(name):
            try:
                await client.create_collection(
                    name,
                    vectors_config={VECTOR_NAME: qm.VectorParams(size=self.dim, distance=qm.Distance.COSINE)},
                    sparse_vectors_config={SPARSE_VECTOR_NAME: _SPARSE_PARAMS},
                )
            except (UnexpectedResponse, ValueError):
                # Another replica may have created it between our check and create.
                if not await client.collection_exists(name):
                    raise
        info = await client.get_collection(name)
        vectors = info.config.params.vectors
        existing = vectors.get(VECTOR_NAME) if isinstance(vectors, dict) else None
        if existing is None or existing.size != self.dim:
            raise ValueError(
                f"collection {name!r} has no {self.dim}-dim vector named {VECTOR_NAME!r}: {vectors!r}"
            )
        for field in KEYWORD_FIELDS:
            # Local mode never lists payload indexes (it ignores them), so there
            # this re-creates them on every call, harmlessly.
            if field not in info.payload_schema:
                await client.create_payload_index(name, field, field_schema=_keyword_index(field), wait=True)
        has_sparse = SPARSE_VECTOR_NAME in (info.config.params.sparse_vectors or {})
        self.hybrid = has_sparse or await self._add_sparse_vector()
        await self._backfill_scope()
        if self.hybrid:
            await self._backfill_sparse()

    async def upsert(self, points: Sequence[VectorPoint]) -> None:
        checked = checked_points(points, self.dim)
        for start in range(0, len(checked), WRITE_CHUNK):
            chunk = checked[start : start + WRITE_CHUNK]
            # wait=True: the context service must see an observation as soon as
            # the observer acks it (read-your-writes).
            await self._client.upsert(
                self.collection,
                points=[
                    qm.PointStruct(id=p.id, vector=_vectors(p, hybrid=self.hybrid), payload=p.payload) for p in chunk
                ],
                wait=True,
            )

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
        terms = sparse.query_vector(query_text) if query_text and self.hybrid else None
        if terms is not None and terms.indices:
            # The filter goes into each prefetch: both rankings see only this
            # tenant's resource, so fusion never sees (or counts) anyone else's points.
            n = prefetch_limit(limit)
            keywords = qm.SparseVector(indices=terms.indices, values=terms.values)
            response = await self._client.query_points(
                self.collection,
                prefetch=[
                    qm.Prefetch(query=list(vector), using=VECTOR_NAME, filter=where, limit=n),
                    qm.Prefetch(query=keywords, using=SPARSE_VECTOR_NAME, filter=where, limit=n),
                ],
                query=qm.RrfQuery(rrf=qm.Rrf(k=RRF_K)),
                limit=limit,
                with_payload=_PAYLOAD,
            )
        else:
            response = await self._client.query_points(
                self.collection,
                query=list(vector),
                using=VECTOR_NAME,
                query_filter=where,
                limit=limit,
                with_payload=_PAYLOAD,
            )
        return [_hit(p) for p in response.points]

    async def rankings(
        self, vector: Sequence[float] | None, *, tenant: str, resource_id: str, query_text: str, limit: int,
        messages: bool | None = None,
    ) -> Rankings:
        where = _scoped(tenant, resource_id, messages)
        terms = sparse.query_vector(query_text) if self.hybrid else None
        requests = {}
        if vector is not None:
            requests["dense"] = qm.QueryRequest(query=list(vector), using=VECTOR_NAME, filter=where, limit=limit,
                                                with_payload=False)
        if terms is not None and terms.indices:
            keywords = qm.SparseVector(indices=terms.indices, values=terms.values)
            requests["keyword"] = qm.QueryRequest(query=keywords, using=SPARSE_VECTOR_NAME, filter=where, limit=limit,
                                                  with_payload=False)
        if limit <= 0 or not requests:
            return Rankings([], [])
        # One round trip for both.
        responses = await self._client.query_batch_points(self.collection, requests=list(requests.values()))
        found = {name: [_hit(p) for p in r.points] for name, r in zip(requests, responses)}
        return Rankings(found.get("dense", []), found.get("keyword", []))

    async def payloads(self, ids: Sequence[str], *, tenant: str) -> dict[str, dict[str, Any]]:
        if not ids:
            return {}
        records = await self._client.retrieve(self.collection, ids=list(ids), with_payload=_PAYLOAD,
                                              with_vectors=False)
        return {str(r.id): r.payload for r in records if r.payload and r.payload.get("tenant") == tenant}

    async def delete(self, ids: Sequence[str]) -> None:
        if ids:
            await self._client.delete(self.collection, points_selector=qm.PointIdsList(points=list(ids)), wait=True)

    async def delete_thread(self, tenant: str, thread_id: str) -> None:
        await self._delete(_filter(tenant=tenant, thread_id=thread_id))

    async def delete_resource(self, tenant: str, resource_id: str) -> None:
        await self._delete(_filter(tenant=tenant, resource_id=resource_id))

    async def count(
        self, *, tenant: str, resource_id: str | None = None, thread_id: str | None = None
    ) -> int:
        result = await self._client.count(
            self.collection,
            count_filter=_filter(tenant=tenant, resource_id=resource_id, thread_id=thread_id),
            exact=True,
        )
        return result.count

    async def ready(self) -> bool:
        try:
            return await self._client.collection_exists(self.collection)
        except Exception:  # any transport or server failure means "not ready", not a crash
            return False

    async def close(self) -> None:
        if self._owns_client:
            await self._client.close()

    async def _delete(self, where: qm.Filter) -> None:
        await self._client.delete(self.collection, points_selector=qm.FilterSelector(filter=where), wait=True)

    async def _add_sparse_vector(self) -> bool:
        """Give a collection made before hybrid search its sparse vector; False if the server cannot."""
        try:
            await self._client.create_vector_name(
                self.collection,
                SPARSE_VECTOR_NAME,
                qm.SparseVectorNameConfig(sparse=qm.SparseVectorConfig(modifier=qm.Modifier.IDF)),
                wait=True,
            )
        except (UnexpectedResponse, ValueError) as exc:
            # Another replica may have added it meanwhile; otherwise the server
            # predates adding vectors to a collection (1.18).
            info = await self._client.get_collection(self.collection)
            if SPARSE_VECTOR_NAME in (info.config.params.sparse_vectors or {}):
                return True
            log.warning(
                "collection %r has no sparse vector and the server could not add it (%s): "
                "searching by meaning only, without keyword matching",
                self.collection,
                exc,
            )
            return False
        log.info("collection %r: added the sparse vector for hybrid search", self.collection)
        return True

    async def _backfill_scope(self) -> int:
        """Give SCOPE to stored points that lack it (written before it existed); resumable."""
        lacking = qm.Filter(must=[qm.IsEmptyCondition(is_empty=qm.PayloadField(key=SCOPE))])
        filled, offset = 0, None
        while True:
            records, offset = await self._client.scroll(
                self.collection, scroll_filter=lacking, limit=WRITE_CHUNK, offset=offset,
                with_payload=["tenant", "resource_id", "kind"], with_vectors=False,
            )
            by_scope: dict[str, list[Any]] = {}
            for record in records:
                by_scope.setdefault(scope_of(record.payload or {}), []).append(record.id)
            for value, ids in by_scope.items():
                await self._client.set_payload(self.collection, payload={SCOPE: value}, points=ids, wait=True)
            filled += len(records)
            if offset is None:
                break
        if filled:
            log.info("collection %r: added the scope to %d points stored before it existed", self.collection, filled)
        return filled

    async def _backfill_sparse(self) -> int:
        """Give the sparse vector to stored points that lack it; resumable, see the edge adapter."""
        filled, offset = 0, None
        while True:
            records, offset = await self._client.scroll(
                self.collection,
                scroll_filter=_LACKING_SPARSE,
                limit=WRITE_CHUNK,
                offset=offset,
                with_payload=["text", "keyword_text"],
                with_vectors=False,
            )
            updates = []
            for record in records:
                terms = sparse.document_vector(keyword_text(record.payload or {}))
                if terms.indices:
                    vector = qm.SparseVector(indices=terms.indices, values=terms.values)
                    updates.append(qm.PointVectors(id=record.id, vector={SPARSE_VECTOR_NAME: vector}))
            if updates:
                # Only where still lacking: a point rewritten meanwhile keeps its own.
                await self._client.update_vectors(
                    self.collection, points=updates, update_filter=_LACKING_SPARSE, wait=True
                )
                filled += len(updates)
            if offset is None:
                break
        if filled:
            log.info(
                "collection %r: added keyword vectors to %d points stored before hybrid search", self.collection, filled
            )
        return filled


def _hit(point: Any) -> VectorHit:
    return VectorHit(id=str(point.id), score=point.score, payload=point.payload or {})


def _vectors(point: VectorPoint, *, hybrid: bool) -> dict[str, Any]:
    vectors: dict[str, Any] = {VECTOR_NAME: point.vector}
    if hybrid:
        terms = sparse.document_vector(keyword_text(point.payload))
        # No terms, no sparse vector: as in the edge adapter, so IDF statistics agree.
        if terms.indices:
            vectors[SPARSE_VECTOR_NAME] = qm.SparseVector(indices=terms.indices, values=terms.values)
    return vectors


def _keyword_index(field: str) -> qm.KeywordIndexParams:
    # is_tenant lets the server keep each tenant's points together on disk.
    return qm.KeywordIndexParams(type=qm.KeywordIndexType.KEYWORD, is_tenant=field == "tenant")


def _filter(
    *,
    tenant: str,
    resource_id: str | None = None,
    thread_id: str | None = None,
    exclude_thread_id: str | None = None,
) -> qm.Filter:
    keys = {"tenant": tenant, "resource_id": resource_id, "thread_id": thread_id}
    must: list[Any] = [
        qm.FieldCondition(key=key, match=qm.MatchValue(value=value)) for key, value in keys.items() if value is not None
    ]
    must_not: list[Any] = []
    if exclude_thread_id is not None:
        must_not.append(qm.FieldCondition(key="thread_id", match=qm.MatchValue(value=exclude_thread_id)))
    return qm.Filter(must=must, must_not=must_not or None)


def _scoped(tenant: str, resource_id: str, messages: bool | None) -> qm.Filter:
    """A resource's messages (True), its other points (False) or all: by SCOPE alone (see points.SCOPE)."""
    scopes = [scope(tenant, resource_id, message=m) for m in ((messages,) if messages is not None else (True, False))]
    match = qm.MatchValue(value=scopes[0]) if len(scopes) == 1 else qm.MatchAny(any=scopes)
    return qm.Filter(must=[qm.FieldCondition(key=SCOPE, match=match)])
