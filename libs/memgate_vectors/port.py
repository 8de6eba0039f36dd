"""The vector index port: what the observer writes and the context service searches."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from memgate_vectors.points import SCOPE, Rankings, VectorHit, VectorPoint

# Both adapters lay data out the same way, so a deployment can move between them.
VECTOR_NAME = "dense"
# BM25-style term weights of keyword_text(payload) (memgate_vectors.sparse), IDF applied by
# the engine. Indexes made before hybrid search lack it until ensure() adds it.
SPARSE_VECTOR_NAME = "sparse"
# Hybrid search: each of the dense and sparse rankings contributes its best
# `limit * PREFETCH_FACTOR` (at least MIN_PREFETCH) candidates, fused by reciprocal
# rank, score = sum of 1 / (RRF_K + position), positions from 0 (what both engines do).
PREFETCH_FACTOR = 4
MIN_PREFETCH = 20
RRF_K = 60

KEYWORD_FIELDS = ("tenant", "resource_id", "thread_id", "kind", SCOPE)
# Points are written (and scrolled) in chunks of this many: bounded request bodies.
WRITE_CHUNK = 256


def prefetch_limit(limit: int) -> int:
    """How many candidates each ranking of a hybrid search contributes."""
    return max(limit * PREFETCH_FACTOR, MIN_PREFETCH)


class TextEmbedder(Protocol):
    """Texts to dense vectors: the local model (`Embedder`) or a provider's endpoint
    (`RemoteEmbedder`). The vector index is made with its `dim`."""

    dim: int

    async def embed_async(self, texts: Sequence[str]) -> list[list[float]]: ...


@runtime_checkable
class VectorIndex(Protocol):
    """Observations and messages as dense + sparse vectors, always searched within one tenant and resource."""

    dim: int
    # After ensure(): True when searches given `query_text` are hybrid; False for an
    # index made before hybrid search that could not gain its sparse vector (the
    # engine is too old), which then searches dense-only.
    hybrid: bool

    async def ensure(self) -> None:
        """Create the collection/shard and its keyword payload indexes if missing; idempotent."""
        ...

    async def upsert(self, points: Sequence[VectorPoint]) -> None:
        """Insert or overwrite points by id; visible to searches when this returns.

        The sparse vector is computed here from `keyword_text(payload)`.
        """
        ...

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
        """Best points of one tenant's resource, best first.

        Without `query_text` (or when it has no searchable terms, or the index is not
        hybrid): nearest by `vector`, scored by cosine similarity. With it: the dense
        and the keyword (BM25) rankings fused by RRF, scored by the fused score. Hits carry
        their payloads as written, without KEYWORD_TEXT (and the SCOPE the index adds).
        """
        ...

    async def rankings(
        self, vector: Sequence[float] | None, *, tenant: str, resource_id: str, query_text: str, limit: int,
        messages: bool | None = None,
    ) -> Rankings:
        """The dense and the keyword ranking of one tenant's resource, unfused: each its
        best `limit` points with its own score (cosine; BM25), as ids and scores only (an
        empty payload: reading payloads costs more than ranking; fetch those kept with
        `payloads`). No `vector`: no dense ranking; a `query_text` without terms: no
        keyword ranking (so a caller can ask for the keyword ranking while its query is
        still being embedded). `messages`: True, only message points; False, only the
        others; None, all."""
        ...

    async def payloads(self, ids: Sequence[str], *, tenant: str) -> dict[str, dict[str, Any]]:
        """The payloads of the tenant's points among `ids`, by id, as `search` gives them;
        ids that do not exist or belong to another tenant are left out."""
        ...

    async def delete(self, ids: Sequence[str]) -> None:
        """Remove points by id (ids that do not exist are ignored)."""
        ...

    async def delete_thread(self, tenant: str, thread_id: str) -> None:
        """Remove every point of one thread."""
        ...

    async def delete_resource(self, tenant: str, resource_id: str) -> None:
        """Remove every point of one resource."""
        ...

    async def count(
        self, *, tenant: str, resource_id: str | None = None, thread_id: str | None = None
    ) -> int:
        """Exact number of points matching all the given keys."""
        ...

    async def ready(self) -> bool:
        """True when the index answers and its collection/shard exists."""
        ...

    async def close(self) -> None:
        """Release the engine (flushing to disk where that applies)."""
        ...
