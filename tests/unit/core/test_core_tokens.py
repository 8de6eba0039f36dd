"""Token counting with the packaged BPE tokenizer."""

from __future__ import annotations

import random

from memgate_core.tokens import count_joined, count_tokens


def test_empty_string_is_zero() -> None:
    assert count_tokens("") == 0


def test_short_text_has_a_few_tokens() -> None:
    assert count_tokens("hello") == 1
    assert 1 <= count_tokens("Hello, world!") <= 5


def test_counts_grow_with_text_and_stay_below_characters() -> None:
    sentence = "The quick brown fox jumps over the lazy dog. "
    one, ten = count_tokens(sentence), count_tokens(sentence * 10)
    assert 5 <= one <= len(sentence)
    assert 9 * one <= ten <= 11 * one


def test_non_ascii_text_is_counted() -> None:
    assert count_tokens("日本語のテキスト") > 0
    assert count_tokens("🙂") >= 1


def test_a_block_counted_by_pieces_matches_the_whole_count() -> None:
    """Lines as a memory block holds them, and lines that try the piece boundaries."""
    rng = random.Random(3)
    lines = [
        "<memgate_memory>", "", "## Observations from this conversation", "- 2026-11-01 [high] Moved to Lisbon.",
        "[2026-12-06 05:12] user: Say ok.", "[2026-12-06 05:12] assistant: ok!!", "### 2026-05-02",
        "user: line one\nline two\n", "assistant: trailing spaces   ", "", "", "  indented after blanks",
        "/slash first", "ends with a slash/", "-> arrow", "«quoted» — dash…", "数字 123456 ✓", "emoji 🙂\r",
        "'s possessive start", "\ttab start", "?", "...", "</memgate_memory>",
    ]
    for _ in range(300):
        block = [rng.choice(lines) for _ in range(rng.randint(0, 12))]
        assert count_joined(block) == count_tokens("\n".join(block)), block
    assert count_joined([]) == 0 and count_joined([""]) == 0
