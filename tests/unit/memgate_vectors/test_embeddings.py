"""The local embedder: shape, normalisation, meaning, batching."""

from __future__ import annotations

import math
import threading

import pytest

from memgate_vectors import Embedder, RemoteEmbedder


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder(cache_size=0)  # every call computes: what these tests are about


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b))  # the vectors are unit length


def test_vectors_have_384_dims_and_unit_norm(embedder: Embedder) -> None:
    vectors = embedder.embed(["hello", "", "word " * 1000])  # empty and over-long texts too
    assert embedder.dim == 384
    assert [len(v) for v in vectors] == [384, 384, 384]
    for v in vectors:
        assert math.sqrt(sum(x * x for x in v)) == pytest.approx(1.0, abs=1e-5)
        assert all(isinstance(x, float) for x in v[:3])


def test_similar_meaning_is_closer(embedder: Embedder) -> None:
    name, weather, question = embedder.embed(["My name is Alex", "The weather in Paris", "What is my name?"])
    assert cosine(question, name) > cosine(question, weather) + 0.3


def test_a_text_gets_the_same_vector_alone_or_in_a_batch(embedder: Embedder) -> None:
    texts = ["short", "a much longer sentence about the observer and the reflector " * 4, "", "Grüße aus Köln ✓"]
    batched = embedder.embed(texts)
    for text, vector in zip(texts, batched):
        (alone,) = embedder.embed([text])
        assert max(abs(x - y) for x, y in zip(vector, alone)) < 1e-5
    # Batches of two see other neighbours and padding lengths: still the same vectors.
    small = Embedder(batch_size=2, cache_size=0).embed(texts)
    assert all(max(abs(x - y) for x, y in zip(a, b)) < 1e-5 for a, b in zip(batched, small))


def test_empty_input_embeds_nothing(embedder: Embedder) -> None:
    assert embedder.embed([]) == []


async def test_embed_async_matches_embed(embedder: Embedder) -> None:
    assert await embedder.embed_async(["hello world"]) == embedder.embed(["hello world"])


def test_model_loads_once_under_concurrent_first_use() -> None:
    embedder = Embedder()
    results: list[list[list[float]]] = []
    threads = [threading.Thread(target=lambda: results.append(embedder.embed(["same text"]))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4 and all(r == results[0] for r in results)


def test_a_text_embedded_recently_comes_from_the_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    embedder = Embedder(cache_size=2)
    computed: list[list[str]] = []
    real = embedder._embed
    monkeypatch.setattr(embedder, "_embed", lambda texts: computed.append(list(texts)) or real(texts))
    first = embedder.embed(["alpha", "beta", "alpha"])  # a repeat within a call is embedded once
    assert computed == [["alpha", "beta"]] and first[0] == first[2]
    assert embedder.embed(["beta", "alpha"]) == [first[1], first[0]] and len(computed) == 1
    embedder.embed(["gamma"])  # over the size: the least recently used ("beta") goes
    embedder.embed(["alpha", "beta"])
    assert computed[1:] == [["gamma"], ["beta"]]


async def test_a_remote_embedder_asks_the_provider_once_per_text() -> None:
    asked: list[list[str]] = []

    async def provider(texts: list[str]) -> list[list[float]]:
        asked.append(texts)
        return [[float(len(t)), 1.0] for t in texts]

    remote = RemoteEmbedder(provider, dim=2, model="fake/embed")
    assert await remote.embed_async(["a", "bb", "a"]) == [[1.0, 1.0], [2.0, 1.0], [1.0, 1.0]]
    assert await remote.embed_async(["bb", "ccc"]) == [[2.0, 1.0], [3.0, 1.0]]
    assert asked == [["a", "bb"], ["ccc"]]
