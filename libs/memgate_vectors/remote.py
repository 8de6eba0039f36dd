"""Embeddings computed by a provider's endpoint instead of the local model."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from memgate_vectors.cache import EmbeddingCache

BATCH = 64  # texts per provider call


class RemoteEmbedder:
    """The async half of `Embedder`'s interface, backed by a provider's embeddings endpoint."""

    def __init__(self, embed: Callable[[list[str]], Awaitable[list[list[float]]]], dim: int, model: str) -> None:
        self._embed = embed
        self.dim = dim
        self.model = model
        self.cache = EmbeddingCache()

    @classmethod
    async def probe(cls, embed: Callable[[list[str]], Awaitable[list[list[float]]]], model: str) -> RemoteEmbedder:
        """Ask once to learn the model's dimension (the vector index is created with it)."""
        vectors = await embed(["dimension probe"])
        return cls(embed, len(vectors[0]), model)

    async def embed_async(self, texts: Sequence[str]) -> list[list[float]]:
        """Embedded by the provider, in batches (those embedded recently come from a cache)."""
        known = self.cache.known(texts)
        missing = self.cache.missing(texts, known)
        for start in range(0, len(missing), BATCH):
            batch = missing[start : start + BATCH]
            vectors = await self._embed(batch)
            self.cache.keep(batch, vectors)
            known.update(zip(batch, vectors))
        return [known[text] for text in texts]
