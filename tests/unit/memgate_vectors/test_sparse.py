"""BM25 sparse vectors: tokenizer, stable term hashing, document and query weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from memgate_vectors import sparse
from memgate_vectors.sparse import K1, SparseVector, document_vector, query_vector, term_index, tokenize


def test_terms_are_lowercased_words_without_stopwords() -> None:
    assert tokenize("The User's CAT sat on the mat, and it was happy.") == ["user", "cat", "sat", "mat", "happy"]
    assert tokenize("") == [] and tokenize("  ...  !?") == []
    assert tokenize("what is it? it is the") == []


def test_joined_words_index_the_whole_and_the_parts() -> None:
    assert tokenize("Order ZX-4471 shipped") == ["order", "zx-4471", "zx", "4471", "shipped"]
    assert tokenize("mail alex@example.com") == ["mail", "alex@example.com", "alex", "example", "com"]
    assert tokenize("v1.2.3 on 2026-11-02.") == ["v1.2.3", "v1", "2", "3", "2026-11-02", "2026", "11", "02"]
    # Separators alone join nothing; single letters drop out, single digits stay.
    assert tokenize("a - b / 5 e-mail") == ["5", "e-mail", "mail"]


def test_light_plural_stemming() -> None:
    words = "orders boxes churches ponies classes status analysis gas cats"
    assert tokenize(words) == ["order", "box", "church", "pony", "class", "status", "analysis", "gas", "cat"]
    assert tokenize("Orders") == tokenize("order")
    assert tokenize("ZX-4471s") == ["zx-4471s", "zx", "4471s"]  # codes are never stemmed


def test_unicode_is_normalised_and_unspaced_scripts_become_pairs() -> None:
    assert tokenize("Grüße aus KÖLN") == ["grüsse", "aus", "köln"]  # casefold
    assert tokenize("ﬁle Ｔｅａ") == ["file", "tea"]  # NFKC: ligatures, full-width forms
    assert tokenize("東京に住む") == ["東京", "京に", "に住", "住む"]
    assert tokenize("猫") == ["猫"]


def test_term_indices_are_pinned() -> None:
    """crc32 of the UTF-8 term: changing it would strand every stored point."""
    assert term_index("order") == 4113142680
    assert term_index("zx-4471") == 2527508150
    assert term_index("köln") == 4004059903
    assert all(0 <= term_index(t) < 2**32 for t in ("", "a", "x" * 1000, "東京"))


def test_vectors_are_the_same_in_another_process() -> None:
    """No dependence on Python's salted hash(): another process, another seed, same vectors."""
    text = "Alex's order ZX-4471 shipped to Köln; orders from 東京 too"
    script = (
        "import json, sys; from memgate_vectors.sparse import document_vector, query_vector;"
        "d, q = document_vector(sys.argv[1]), query_vector(sys.argv[1]);"
        "print(json.dumps([d.indices, d.values, q.indices]))"
    )
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-c", script, text], check=True, capture_output=True, text=True, env=env)
        indices, values, query = json.loads(out.stdout)
        here = document_vector(text)
        assert (indices, query) == (here.indices, query_vector(text).indices)
        assert values == pytest.approx(here.values, rel=1e-12)


def test_document_weights_follow_bm25() -> None:
    # One occurrence in a document of average length weighs exactly 1.
    text = " ".join(f"word{i}" for i in range(int(sparse.AVG_DOC_LEN)))
    values = document_vector(text).values
    assert len(values) == sparse.AVG_DOC_LEN and values == pytest.approx([1.0] * len(values))
    # More occurrences weigh more, saturating below k1 + 1.
    weights = [max(document_vector(" ".join(["tea"] * n + ["x1", "x2"])).values) for n in (1, 2, 5, 50)]
    assert weights == sorted(weights) and weights[-1] < K1 + 1
    # The same term weighs less in a longer document.
    short, long = document_vector("lemon tea"), document_vector("lemon " + " ".join(f"w{i}" for i in range(60)))
    assert dict(zip(short.indices, short.values))[term_index("lemon")] > dict(zip(long.indices, long.values))[
        term_index("lemon")
    ]


def test_vectors_are_sorted_and_distinct() -> None:
    doc = document_vector("tea coffee tea milk coffee tea")
    assert doc.indices == sorted(set(doc.indices)) and len(doc.indices) == len(doc.values) == 3
    assert document_vector("") == SparseVector([], [])
    assert document_vector("the and of") == SparseVector([], [])


def test_query_vector_is_binary() -> None:
    q = query_vector("Tea, tea and more TEA with lemon?")
    assert q.indices == sorted({term_index("tea"), term_index("lemon")})
    assert q.values == [1.0, 1.0]
    assert query_vector("the") == SparseVector([], [])


def test_terms_sharing_an_index_add_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sparse, "term_index", lambda term: 7)
    (weight,) = document_vector("alpha beta").values
    expected = 2 * (K1 + 1) / (2 + K1 * (1 - sparse.B + sparse.B * 2 / sparse.AVG_DOC_LEN))
    assert weight == pytest.approx(expected)


def test_words_are_cached_and_long_runs_are_not() -> None:
    """The word cache is bounded by size as well as count: a run of letters of any length
    (pasted data, an attacker's query) is tokenised as usual but never kept."""
    sparse._cached_word_terms.cache_clear()
    assert tokenize("ponies ponies boxes") == ["pony", "pony", "box"]
    assert sparse._cached_word_terms.cache_info().currsize == 2
    blob = "q" * 100_000 + "s"
    assert tokenize(f"{blob} x-ray-2") == ["q" * 100_000, "x-ray-2", "ray", "2"]
    assert sparse._cached_word_terms.cache_info().currsize == 3  # (only "x-ray-2")
