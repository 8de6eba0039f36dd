"""The local observer's thread titles: the opening message's first sentence, kept short."""

from __future__ import annotations

import pytest

from memgate_observer.local import TITLE_CHARS, local_title


@pytest.mark.parametrize(("opening", "title"), [
    ("My sister Lena moved to Copenhagen. She has two cats.", "My sister Lena moved to Copenhagen"),
    ("  help me   plan a trip\nto Oslo!  ", "help me plan a trip"),
    ("What is the capital of France?", "What is the capital of France"),
    ("- book the flights\n- pack", "book the flights"),
    ("...", "Conversation"),
])
def test_the_first_sentence_is_the_title(opening: str, title: str) -> None:
    assert local_title(opening) == title


def test_a_long_opening_is_cut_at_a_word() -> None:
    title = local_title("I would like to understand how the tides of the North Sea depend on the moon and the wind")
    assert title.endswith("…") and len(title) <= TITLE_CHARS + 1
    assert title == "I would like to understand how the tides of the North Sea…"
    assert local_title("x" * 500) == "x" * TITLE_CHARS + "…"
