"""The vector index on a Qdrant server, through qdrant-client's async REST client."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from qdrant_client import AsyncQdrantClient
from qdrant_client import models as qm
from qdrant_client.http.exceptions import UnexpectedResponse

from memgate_vectors.points import VectorHit, VectorPoint, checked_points
from memgate_vectors.port import KEYWORD_FIELDS, VECTOR_NAME, WRITE_CHUNK


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

    async def upsert(self, points: Sequence[VectorPoint]) -> None:
        checked = checked_points(points, self.dim)
        for start in range(0, len(checked), WRITE_CHUNK):
            chunk = checked[start : start + WRITE_CHUNK]
            # wait=True: the context service must see an observation as soon as
            # the observer acks it (read-your-writes).
            await self._client.upsert(
                self.collection,
                points=[qm.PointStruct(id=p.id, vector={VECTOR_NAME: p.vector}, payload=p.payload) for p in chunk],
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
    ) -> list[VectorHit]:
        if limit <= 0:
            return []
        response = await self._client.query_points(
            self.collection,
            query=list(vector),
            using=VECTOR_NAME,
            query_filter=_filter(tenant=tenant, resource_id=resource_id, exclude_thread_id=exclude_thread_id),
            limit=limit,
            with_payload=True,
        )
        return [VectorHit(id=str(p.id), score=p.score, payload=p.payload or {}) for p in response.points]

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
