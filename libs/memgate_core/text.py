"""How much a message says by itself: what recall ranks lower (the observer marks it on
each message it indexes; the context service reads the mark)."""

from __future__ import annotations

import re

MIN_OWN_WORDS = 2  # ("My name is Dana." has two)
_WORD = re.compile(r"[^\W\d_]{3,}")


def few_words(text: str) -> bool:
    """Under MIN_OWN_WORDS words of three letters or more ("ok", "Yes!", "Say ok.")."""
    return len(_WORD.findall(text)) < MIN_OWN_WORDS


def slight(text: str) -> bool:
    """Too little of its own to stand alone: a few words, or only a question. Such a
    message means what it answers or what answers it."""
    stripped = text.strip()
    return few_words(stripped) or (stripped.endswith("?") and not re.search(r"[.!]\s", stripped))
