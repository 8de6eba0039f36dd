"""Text helpers the LLM-free observer and reflector share: sentences, words, topics."""

from __future__ import annotations

import re

_CODE_BLOCK = re.compile(r"```.*?(```|$)", re.DOTALL)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=\S)")
_ABBREVIATION = re.compile(r"\b(?:mr|mrs|ms|dr|prof|st|vs|etc|e\.g|i\.e|approx|no|jr|sr|inc|ltd)\.$", re.IGNORECASE)
_BULLET = re.compile(r"^\s*(?:[-*•>]+|\d{1,3}[.)]|#{1,6})\s+")
_EMPHASIS = re.compile(r"\*\*|__|`")
_WORD = re.compile(r"\w+(?:'\w+)?")

STOPWORDS = frozenset(
    "a an the and or but if then so of to in on at by for with from about as into over after before is are was "
    "were be been being am do does did has have had i i'm i've i'll me my mine we our you your he she it its they "
    "them their this that these those there here what which who whom how when where why not no yes just also very "
    "too will would can could should shall may might must user stated assistant asked committed recommended "
    "updates".split()
)


def sentences(text: str) -> list[str]:
    """Sentences of a message, one per item: code blocks skipped, list markers removed, spaces collapsed."""
    text = _CODE_BLOCK.sub("\n", text)
    found: list[str] = []
    for line in text.splitlines():
        line = _EMPHASIS.sub("", _BULLET.sub("", line)).strip()
        if not line:
            continue
        pieces = _SENTENCE_END.split(line)
        merged: list[str] = []
        for piece in pieces:
            if merged and _ABBREVIATION.search(merged[-1]):
                merged[-1] += " " + piece
            else:
                merged.append(piece)
        found.extend(" ".join(p.split()) for p in merged if p.strip())
    return found


def words(text: str) -> list[str]:
    return _WORD.findall(text.casefold())


def content_words(text: str) -> set[str]:
    """The words that carry the topic (no stopwords, no attribution prefixes)."""
    return {w for w in words(text) if w not in STOPWORDS and len(w) > 1}


def similarity(a: set[str], b: set[str]) -> float:
    """Jaccard similarity of two word sets."""
    if not a or not b:
        return 0.0
    return len(a & b) / len(a | b)


def normalised(text: str) -> str:
    return " ".join(words(text))
