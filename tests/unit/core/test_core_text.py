"""How much a message says by itself (what recall ranks lower)."""

from __future__ import annotations

import pytest

from memgate_core.text import few_words, slight


@pytest.mark.parametrize("text", ["ok", "Say ok.", "Thanks!", "Yes!!", "", "12 34 56"])
def test_few_words(text: str) -> None:
    assert few_words(text) and slight(text)


@pytest.mark.parametrize("text", ["What is my name?", "My name is Dana.", "I painted a lake sunrise."])
def test_enough_words(text: str) -> None:
    assert not few_words(text)


def test_a_message_that_only_asks_is_slight_one_that_also_tells_is_not() -> None:
    assert slight("Did you paint that lake sunrise yourself?")
    assert not slight("I painted a lake sunrise last year. Do you like it?")
    assert not slight("I painted a lake sunrise last year!")


def test_scripts_without_spaces_count_their_characters() -> None:
    assert not few_words("我喜欢吃寿司和拉面") and not few_words("東京で何を食べましたか")
    assert few_words("谢谢") and few_words("はい")
    assert not few_words("寿司 sushi please")
