"""Recently embedded texts, so the same text is embedded once.

A text's vector does not depend on what it is embedded with, so reuse is exact. What
repeats in practice: the message a batch of new messages follows (embedded with the batch
before), a retried or repeated question, a client's fixed prompts.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

SIZE = 2048  # texts
MAX_TEXT_CHARS = 4000  # longer texts are not kept (at most about 2048 x (4 KB + a vector): ~20 MB)


class EmbeddingCache:
    """A thread-safe LRU of text -> vector (the local embedder runs in worker threads).

    An embedder asks `known(texts)`, embeds `missing(texts, known)` and hands them to
    `keep`; callers must not change the vectors they get.
    """

    def __init__(self, size: int = SIZE) -> None:
        self.size = size
        self._vectors: OrderedDict[str, list[float]] = OrderedDict()
        self._lock = threading.Lock()

    def known(self, texts: Sequence[str]) -> dict[str, list[float]]:
        found = {}
        with self._lock:
            for text in texts:
                vector = self._vectors.get(text)
                if vector is not None:
                    self._vectors.move_to_end(text)
                    found[text] = vector
        return found

    @staticmethod
    def missing(texts: Sequence[str], known: dict[str, list[float]]) -> list[str]:
        """The texts to embed: those not known, each once."""
        return list(dict.fromkeys(t for t in texts if t not in known))

    def keep(self, texts: Sequence[str], vectors: Sequence[list[float]]) -> None:
        with self._lock:
            for text, vector in zip(texts, vectors):
                if len(text) <= MAX_TEXT_CHARS:
                    self._vectors[text] = vector
            while len(self._vectors) > self.size:
                self._vectors.popitem(last=False)
