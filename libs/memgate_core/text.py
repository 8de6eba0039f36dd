"""How much a message says by itself: what recall ranks lower (the observer marks it on
each message it indexes; the context service reads the mark)."""

from __future__ import annotations

import re

MIN_OWN_WORDS = 2  # ("My name is Dana." has two)
_WORD = re.compile(r"[^\W\d_]{3,}")
# Scripts written without spaces (kana, CJK ideographs, Thai): two characters count as a word.
_UNSPACED = re.compile(r"[\u0e00-\u0e7f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def few_words(text: str) -> bool:
    """Under MIN_OWN_WORDS words of three letters or more ("ok", "Yes!", "Say ok."); in
    scripts without spaces, under twice as many characters ("谢谢")."""
    unspaced = len(_UNSPACED.findall(text))
    return len(_WORD.findall(_UNSPACED.sub(" ", text))) + unspaced // 2 < MIN_OWN_WORDS


def slight(text: str) -> bool:
    """Too little of its own to stand alone: a few words, or only a question. Such a
    message means what it answers or what answers it."""
    stripped = text.strip()
    return few_words(stripped) or (stripped.endswith("?") and not re.search(r"[.!]\s", stripped))
