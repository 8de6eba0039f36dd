"""Choose the vector index adapter from configuration."""

from __future__ import annotations

from pathlib import Path

from memgate_vectors.port import VectorIndex


def open_vector_index(
    *, qdrant_url: str | None, data_dir: Path, dim: int = 384, api_key: str | None = None
) -> VectorIndex:
    """A Qdrant server index if `qdrant_url` is set, else an in-process shard under `data_dir`.

    Call `ensure()` on the result before use.
    """
    # Imported here so each process loads only the engine it uses (qdrant-client
    # alone takes ~1.5 s to import).
    if qdrant_url:
        from memgate_vectors.qdrant_server import ServerVectorIndex

        return ServerVectorIndex(qdrant_url, dim=dim, api_key=api_key)
    from memgate_vectors.qdrant_edge import EdgeVectorIndex

    return EdgeVectorIndex(Path(data_dir) / "qdrant", dim=dim)
