"""The vector index port, its two Qdrant adapters, local embeddings, and BM25 sparse vectors.

The adapters and the embedder are imported on first use: qdrant-client,
qdrant-edge and onnxruntime are heavy, and a process needs one engine at most.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from memgate_vectors.factory import open_vector_index
from memgate_vectors.points import KEYWORD_TEXT, MESSAGE_KIND, Rankings, VectorHit, VectorPoint, message_point_id
from memgate_vectors.port import TextEmbedder, VectorIndex
from memgate_vectors.remote import RemoteEmbedder

if TYPE_CHECKING:
    from memgate_vectors.embeddings import Embedder
    from memgate_vectors.qdrant_edge import EdgeVectorIndex
    from memgate_vectors.qdrant_server import ServerVectorIndex

_LAZY = {
    "Embedder": "memgate_vectors.embeddings",
    "EdgeVectorIndex": "memgate_vectors.qdrant_edge",
    "ServerVectorIndex": "memgate_vectors.qdrant_server",
}

__all__ = [
    "KEYWORD_TEXT",
    "MESSAGE_KIND",
    "EdgeVectorIndex",
    "Embedder",
    "Rankings",
    "RemoteEmbedder",
    "ServerVectorIndex",
    "TextEmbedder",
    "VectorHit",
    "VectorIndex",
    "VectorPoint",
    "message_point_id",
    "open_vector_index",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'memgate_vectors' has no attribute {name!r}")
