"""The LLM-free observer: dated facts from the user's statements."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import date, datetime, timezone

import pytest

from memgate_core.events import ExchangeCompleted, MessageRecord
from memgate_observer.local import LocalObserver

# 2024-03-10 23:30 UTC: already 2024-03-11 east of UTC+0:30.
LATE_EVENING_UTC = datetime(2024, 3, 10, 23, 30, tzinfo=timezone.utc).timestamp()


def _event(*messages: MessageRecord) -> ExchangeCompleted:
    return ExchangeCompleted(
        exchange_id="ex", tenant="t", resource_id="r", thread_id="th", model="m", provider="p",
        messages=list(messages), started_at=0.0, completed_at=0.0,
    )


def _user(mid: str, content: str, at: float = LATE_EVENING_UTC) -> MessageRecord:
    return MessageRecord(mid, "user", content, at)


@pytest.fixture
def far_east_timezone() -> Iterator[None]:
    """Run with a local zone of UTC+14, so UTC and local dates differ."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = "Pacific/Kiritimati"
    time.tzset()
    try:
        yield
    finally:
        if old is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = old
        time.tzset()


async def test_statement_becomes_a_dated_observation_with_provenance(far_east_timezone: None) -> None:
    [draft] = await LocalObserver().observe(_event(_user("m1", "My name is Dana Smith.")))
    assert draft.text == "User stated: My name is Dana Smith."
    assert draft.priority == "high"
    assert draft.observed_on == date(2024, 3, 10)  # the UTC date, not the local one
    assert draft.source_message_ids == ["m1"]


async def test_questions_and_fillers_are_skipped() -> None:
    text = "Hi! Thanks a lot. What is the capital of France? Okay, sure. Can you help me with this?"
    drafts = await LocalObserver().observe(_event(_user("m1", text), _user("m2", "ok"), _user("m3", "Thank you!")))
    assert [d.text for d in drafts] == ["User stated: Thanks a lot."]


async def test_assistant_messages_are_ignored() -> None:
    event = _event(
        MessageRecord("a1", "assistant", "I am an assistant and I love helping people.", LATE_EVENING_UTC),
        MessageRecord("s1", "system", "You always answer in French.", LATE_EVENING_UTC),
        MessageRecord("t1", "tool", "The weather in Paris is sunny today.", LATE_EVENING_UTC),
    )
    assert await LocalObserver().observe(event) == []


async def test_duplicates_are_removed_case_insensitively() -> None:
    drafts = await LocalObserver().observe(
        _event(_user("m1", "I live in Berlin. I live in Berlin."), _user("m2", "i LIVE in   berlin."))
    )
    assert len(drafts) == 1
    assert drafts[0].source_message_ids == ["m1"]


@pytest.mark.parametrize(
    ("sentence", "priority"),
    [
        ("I prefer tea over coffee.", "high"),
        ("I'm allergic to peanuts.", "high"),
        ("My daughter starts school in September.", "high"),
        ("The deadline is next Friday.", "high"),
        ("I work at Acme Corp as an engineer.", "high"),
        ("The build takes twelve minutes on CI.", "medium"),
        ("Paris was lovely in spring.", "medium"),
    ],
)
async def test_priorities(sentence: str, priority: str) -> None:
    [draft] = await LocalObserver().observe(_event(_user("m1", sentence)))
    assert draft.priority == priority


async def test_sentences_and_lines_are_split_and_whitespace_normalized() -> None:
    text = "I   live\tin Lisbon now!  The office moved last year.\nMy dog is called Rex"
    drafts = await LocalObserver().observe(_event(_user("m1", text)))
    assert [d.text for d in drafts] == [
        "User stated: I live in Lisbon now!",
        "User stated: The office moved last year.",
        "User stated: My dog is called Rex",
    ]


async def test_each_message_keeps_its_own_id_and_date() -> None:
    day2 = datetime(2024, 3, 12, 8, 0, tzinfo=timezone.utc).timestamp()
    drafts = await LocalObserver().observe(
        _event(_user("m1", "I like green tea."), _user("m2", "I moved to Oslo recently.", at=day2))
    )
    assert [(d.source_message_ids, d.observed_on) for d in drafts] == [
        (["m1"], date(2024, 3, 10)), (["m2"], date(2024, 3, 12)),
    ]


async def test_short_fragments_are_skipped() -> None:
    assert await LocalObserver().observe(_event(_user("m1", "Sounds good. Yes please."))) == []
