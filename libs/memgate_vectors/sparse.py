"""BM25-style sparse vectors of observation text, the same for every adapter.

BM25 is split between memgate and the engine. Here: the term-frequency half of a
document (saturated by k1 and normalised by length with b) and the term set of a
query. In Qdrant: the IDF half, because the sparse vector is configured with the
IDF modifier, so document frequencies stay right as points come and go. The
score of a document is then sum over query terms of idf(t) * bm25_tf(t, doc).

Why not `qdrant_edge.Bm25`: it is deterministic, but it exists only in the edge
binding. The server adapter would need server-side inference (a newer server
and a model name) for the same vectors, and qdrant-client's local mode could not
make them at all. Owning the tokenizer keeps the stored vectors identical in both
adapters (so data can move between them), and tokenisation changes only when we
change it, never on a dependency upgrade.

Everything here is part of the index format: a changed tokenizer, stemmer,
stopword list or hash makes old points unreachable by the new terms until they
are re-indexed. (k1, b and the average length only re-weight, and are safe to tune.)
"""

from __future__ import annotations

import re
import unicodedata
import zlib
from collections import Counter
from functools import lru_cache

import msgspec

K1 = 1.2
B = 0.75
# Observations are one short dated sentence each, far below the 256 tokens that
# BM25 defaults assume for web pages.
AVG_DOC_LEN = 24.0

# Words joined by these stay one term as well as their parts: "ZX-4471" indexes
# "zx-4471", "zx" and "4471"; "alex@example.com" the address and its pieces.
_TOKEN = re.compile(r"[^\W_]+(?:[-_./:@#+][^\W_]+)*")
_POSSESSIVE = re.compile(r"['\u2019]s\b")
# Scripts written without spaces: a run becomes overlapping character pairs.
_UNSPACED = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]+")

STOPWORDS = frozenset(
    """
    a about above after again against all am an and any are as at be because been
    before being below between both but by can could did do does doing down during
    each few for from further had has have having he her here hers herself him
    himself his how i if in into is it its itself just me more most my myself no nor
    not now of off on once only or other our ours ourselves out over own same she
    should so some such than that the their theirs them themselves then there these
    they this those through to too under until up very was we were what when where
    which while who whom why will with would you your yours yourself yourselves
    """.split()
)


class SparseVector(msgspec.Struct, frozen=True):
    """Non-zero dimensions (ascending uint32 indices) and their weights."""

    indices: list[int]
    values: list[float]


def tokenize(text: str) -> list[str]:
    """The terms of `text`, in order, repeated as often as they occur."""
    text = _POSSESSIVE.sub("", unicodedata.normalize("NFKC", text).casefold())
    terms: list[str] = []
    for match in _TOKEN.finditer(text):
        token = match.group()
        if _UNSPACED.search(token):
            terms.extend(_unspaced_terms(token))
        elif len(token) <= CACHED_TOKEN_CHARS:
            terms.extend(_cached_word_terms(token))
        else:  # (a long run of letters, e.g. pasted data: not worth keeping, and of any size)
            terms.extend(_word_terms(token))
    return terms


# Words recur, and splitting, stemming and the stopword check were most of tokenize's time:
# on LoCoMo's turns (each with the turn it follows, as messages are indexed) document_vector
# takes half the time with the cache, or less once it is warm (in one run: 125 us a text
# without it, 75-85 us on a first pass, about 50 us after). Bounded: 16,384 words of at most
# CACHED_TOKEN_CHARS.
CACHED_TOKEN_CHARS = 24


def _word_terms(token: str) -> tuple[str, ...]:
    parts = re.split(r"[-_./:@#+]", token)
    compound = (token,) if len(parts) > 1 else ()  # the compound as written: rare, so it weighs most
    return (*compound, *(stem(p) for p in parts if _keep(p)))


_cached_word_terms = lru_cache(maxsize=16_384)(_word_terms)


def stem(word: str) -> str:
    """Light English plural stemming: 'orders' -> 'order', 'boxes' -> 'box', 'ponies' -> 'pony'."""
    if len(word) <= 3 or not word.isalpha() or not word.endswith("s") or word.endswith(("ss", "us", "is")):
        return word
    if word.endswith("ies") and not word.endswith(("eies", "aies")):
        return word[:-3] + "y"
    if word.endswith(("sses", "xes", "ches", "shes", "zzes")):
        return word[:-2]
    return word[:-1]


def term_index(term: str) -> int:
    """A stable uint32 dimension for a term (crc32: the same in every process and version)."""
    return zlib.crc32(term.encode("utf-8"))


def document_vector(text: str, *, k1: float = K1, b: float = B, avg_len: float = AVG_DOC_LEN) -> SparseVector:
    """BM25 term weights of a stored text: tf * (k1 + 1) / (tf + k1 * (1 - b + b * len / avg_len))."""
    terms = tokenize(text)
    # Counted by index, so two terms that share a hash add up instead of overwriting.
    counts = Counter(term_index(t) for t in terms)
    norm = k1 * (1 - b + b * len(terms) / avg_len)
    indices = sorted(counts)
    return SparseVector(indices, [counts[i] * (k1 + 1) / (counts[i] + norm) for i in indices])


def query_vector(text: str) -> SparseVector:
    """Each distinct term of a query with weight 1: the engine multiplies in the IDF."""
    indices = sorted({term_index(t) for t in tokenize(text)})
    return SparseVector(indices, [1.0] * len(indices))


def _keep(part: str) -> bool:
    # Single letters carry nothing ("e" of "e-mail"); single digits may ("room 5").
    return part not in STOPWORDS and (len(part) > 1 or part.isdigit())


def _unspaced_terms(token: str) -> list[str]:
    terms = []
    for piece in re.split(f"({_UNSPACED.pattern})", token):
        if not piece:
            continue
        if _UNSPACED.fullmatch(piece):
            terms.extend([piece] if len(piece) == 1 else [piece[i : i + 2] for i in range(len(piece) - 1)])
        elif _keep(piece):
            terms.append(stem(piece))
    return terms
