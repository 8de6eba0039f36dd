"""Token counting with the packaged BPE tokenizer."""

from __future__ import annotations

from memgate_core.tokens import count_tokens


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
