"""The vector index port: what the observer writes and the context service searches."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from memgate_vectors.points import VectorHit, VectorPoint

# Both adapters lay data out the same way, so a deployment can move between them.
VECTOR_NAME = "dense"
KEYWORD_FIELDS = ("tenant", "resource_id", "thread_id")
# Points are written in chunks of this many: bounded request bodies for the server,
# and for the edge shard (which holds the GIL while it works) a turn for the event
# loop between chunks.
WRITE_CHUNK = 256


@runtime_checkable
class VectorIndex(Protocol):
    """Dense vectors of observations, always searched within one tenant and resource."""

    dim: int

    async def ensure(self) -> None:
        """Create the collection/shard and its keyword payload indexes if missing; idempotent."""
        ...

    async def upsert(self, points: Sequence[VectorPoint]) -> None:
        """Insert or overwrite points by id; visible to searches when this returns."""
        ...

    async def search(
        self,
        vector: Sequence[float],
        *,
        tenant: str,
        resource_id: str,
        exclude_thread_id: str | None = None,
        limit: int = 10,
    ) -> list[VectorHit]:
        """Nearest points of one tenant's resource, closest first."""
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
