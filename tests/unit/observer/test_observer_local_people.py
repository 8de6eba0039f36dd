"""The LLM-free observer on conversations between two people ("Caroline: ...", "Melanie: ...").

Replayed conversations carry each speaker's name as a prefix: the user role is one person,
the assistant role the other. What either says about themselves is kept under their name;
greetings, reactions and compliments are not.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from memgate_core.events import ExchangeCompleted, MessageRecord
from memgate_observer.base import ObservationDraft, ObserverInput, ObserverResult
from memgate_observer.dates import resolve_relative_dates
from memgate_observer.local import LocalObserver
from memgate_observer.speech import is_filler, split_photos, split_speaker
from memgate_store import Observation

# 2023-05-08 (a Monday) 13:56 UTC: the first session of the conversation.
MAY_8 = datetime(2023, 5, 8, 13, 56, tzinfo=UTC).timestamp()
MAY_25 = datetime(2023, 5, 25, 13, 14, tzinfo=UTC).timestamp()


def _user(mid: str, content: str, at: float = MAY_8) -> MessageRecord:
    return MessageRecord(mid, "user", content, at)


def _assistant(mid: str, content: str, at: float = MAY_8) -> MessageRecord:
    return MessageRecord(mid, "assistant", content, at)


async def _result(*messages: MessageRecord, recent: list[Observation] | None = None) -> ObserverResult:
    event = ExchangeCompleted(
        exchange_id="ex", tenant="t", resource_id="r", thread_id="th", model="m", provider="p",
        messages=list(messages), started_at=0.0, completed_at=0.0,
    )
    return await LocalObserver().observe(ObserverInput("t", "th", "r", [event], recent=recent or []))


async def _observe(*messages: MessageRecord) -> list[ObservationDraft]:
    return (await _result(*messages)).drafts


async def _texts(*messages: MessageRecord) -> list[str]:
    return [d.text for d in await _observe(*messages)]


async def test_a_speaker_prefix_names_the_speaker_and_dates_the_event() -> None:
    text = "Caroline: I went to a LGBTQ support group yesterday and it was so powerful."
    [draft] = await _observe(_user("D1:3", text))
    assert draft.text == "Caroline said: I went to a LGBTQ support group yesterday (2023-05-07) and it was so powerful."
    assert draft.observed_on == date(2023, 5, 8)
    assert draft.source_message_ids == ["D1:3"]
    assert "User stated" not in draft.text


async def test_what_the_assistant_role_speaker_says_about_themselves_is_kept() -> None:
    drafts = await _observe(
        _user("D1:13", "Caroline: Thanks, Melanie! That's really sweet. Is this your own painting?"),
        _assistant("D1:14", "Melanie: Yeah, I painted that lake sunrise last year! It's special to me."),
        _assistant("D1:18", "Melanie: I'm off to go swimming with the kids. "
                            "We're thinking about going camping next month."),
    )
    assert [(d.text, d.source_message_ids) for d in drafts] == [
        ("Melanie said: Yeah, I painted that lake sunrise last year (2022)!", ["D1:14"]),
        ("Melanie said: I'm off to go swimming with the kids.", ["D1:18"]),
        ("Melanie said: We're thinking about going camping next month (2023-06).", ["D1:18"]),
    ]


@pytest.mark.parametrize("filler", [
    "Wow, Gina!",
    "That's so cool!",
    "Thanks, Mel!",
    "Good to see you!",
    "I'm so happy for you!",
    "That sounds amazing, keep it up!",
    "Hey Mel! Good to see you! How have you been?",
    "Wow, that agency looks great!",
    "You'd be a great counselor! Your empathy will really help the people you work with.",
    "Sounds like your event was amazing!",
    "Aww, that's so sweet! Keep up the great work!",
    "No worries, Mel!",
])
@pytest.mark.parametrize("role", ["user", "assistant"])
async def test_greetings_reactions_and_compliments_are_dropped(filler: str, role: str) -> None:
    other = "Jon" if role == "user" else "Gina"
    messages = [MessageRecord("m1", role, f"{'Gina' if role == 'user' else 'Jon'}: {filler}", MAY_8)]
    if role == "assistant":  # an assistant's prefix names a person when the user's does too
        messages.insert(0, _user("m0", f"{other}: Hey! How was your week?"))
    assert await _observe(*messages) == []


async def test_a_filler_message_keeps_only_its_fact() -> None:
    text = "Melanie: Hey Caroline! Good to see you! I'm swamped with the kids & work. What's up with you? Anything new?"
    assert await _texts(_user("D1:1", "Caroline: Hey Mel! Good to see you! How have you been?"),
                        _assistant("D1:2", text)) == ["Melanie said: I'm swamped with the kids & work."]


async def test_unprefixed_user_reactions_are_dropped_too() -> None:
    assert await _observe(_user("m1", "That's so cool! I love it! Wow, sounds great.")) == []


def test_sentences_need_a_content_word_beyond_fillers_and_names() -> None:
    names = {"caroline", "melanie"}
    assert is_filler("Thanks, Melanie, that's really sweet!", names)
    assert is_filler("Wow, Caroline, you're amazing!", names)
    assert is_filler("Hey Mel!", names)  # a short form of a speaker's name
    assert not is_filler("Caroline painted a sunset.", names)
    assert not is_filler("I adopted a dog named Luna.", names)


async def test_a_shared_photo_is_observed_with_its_caption() -> None:
    text = ("Melanie: By the way, take a look at this. "
            "[shared a photo: a photo of a painting of a sunset over a lake]")
    drafts = await _observe(_user("D1:11", "Caroline: I'm keen on counseling."), _assistant("D1:12", text))
    assert [(d.text, d.source_message_ids) for d in drafts if d.source_message_ids == ["D1:12"]] == [
        ("Melanie shared a photo: a painting of a sunset over a lake.", ["D1:12"]),
    ]


async def test_a_photo_follows_the_facts_of_its_message() -> None:
    text = ("Caroline: I finished my painting for the art show last week! "
            "[shared a photo: a painting of a rainbow flag]")
    assert await _texts(_user("D9:14", text)) == [
        "Caroline said: I finished my painting for the art show last week (week of 2023-05-01)!",
        "Caroline shared a photo: a painting of a rainbow flag.",
    ]


def test_photo_markers_are_split_off() -> None:
    assert split_photos("Look! [shared a photo: a photo of a dog on a beach]") == ("Look!", ["a dog on a beach"])
    assert split_photos("[shared a photo: a photography of a family on a beach]") == ("", ["a family on a beach"])
    assert split_photos("No photo here.") == ("No photo here.", [])


async def test_each_observation_is_dated_by_when_it_was_said() -> None:
    drafts = await _observe(
        _user("D2:1", "Melanie: I ran a charity race for mental health last Saturday.", at=MAY_25),
        _assistant("D2:2", "Caroline: A friend made this bowl for my 18th birthday ten years ago.", at=MAY_25),
    )
    assert [(d.text, d.observed_on) for d in drafts] == [
        ("Melanie said: I ran a charity race for mental health last Saturday (2023-05-20).", date(2023, 5, 25)),
        ("Caroline said: A friend made this bowl for my 18th birthday ten years ago (2013).", date(2023, 5, 25)),
    ]


@pytest.mark.parametrize(("text", "resolved"), [
    ("I went there yesterday.", "I went there yesterday (2023-05-07)."),
    ("Last night was amazing.", "Last night (2023-05-07) was amazing."),
    ("I painted it last year.", "I painted it last year (2022)."),
    ("We hiked last weekend.", "We hiked last weekend (weekend of 2023-05-06)."),
    ("Camping this weekend.", "Camping this weekend (weekend of 2023-05-13)."),
    ("We went camping two weekends ago.", "We went camping two weekends ago (weekend of 2023-04-29)."),
    ("I joined a group last Tues.", "I joined a group last Tues (2023-05-02)."),
    ("I started three years ago.", "I started three years ago (2020)."),
    ("We moved a few years ago.", "We moved a few years ago (2020)."),
    ("We went there last summer.", "We went there last summer (summer 2022)."),
    ("A trip next summer.", "A trip next summer (summer 2023)."),
    ("It snowed last winter.", "It snowed last winter (winter 2022-23)."),
    ("A show next month.", "A show next month (2023-06)."),
    ("in the sun on Sunday", "in the sun on Sunday (2023-05-14)"),
    # "on <day>" told of the past is the day before, not after (the 8th is a Monday) ...
    ("I won my fourth tournament on Friday!", "I won my fourth tournament on Friday (2023-05-05)!"),
    ("We finally painted the fence on Saturday.", "We finally painted the fence on Saturday (2023-05-06)."),
    ("It was so much fun on Friday.", "It was so much fun on Friday (2023-05-05)."),
    ("We went there on Friday, and loved it.", "We went there on Friday (2023-05-05), and loved it."),
    # ... and plans, questions and anything unsure keep the day after
    ("I'm so excited for the show on Friday.", "I'm so excited for the show on Friday (2023-05-12)."),
    ("I'm having lunch with Fred on Friday.", "I'm having lunch with Fred on Friday (2023-05-12)."),
    ("I've booked a table for two on Friday.", "I've booked a table for two on Friday (2023-05-12)."),
    ("I have a meeting scheduled on Friday.", "I have a meeting scheduled on Friday (2023-05-12)."),
    ("I was wondering if we could meet on Friday.", "I was wondering if we could meet on Friday (2023-05-12)."),
    ("I wanted to go to the beach on Friday.", "I wanted to go to the beach on Friday (2023-05-12)."),
    ("My boss asked me to work on Friday.", "My boss asked me to work on Friday (2023-05-12)."),
    ("Did you remember that I sing on Friday?", "Did you remember that I sing on Friday (2023-05-12)?"),
    ("I finished my thesis and my defense is on Friday.",
     "I finished my thesis and my defense is on Friday (2023-05-12)."),
    ("We went there. I will go again on Friday.", "We went there. I will go again on Friday (2023-05-12)."),
    ("Joanna finished a draft on Friday.", "Joanna finished a draft on Friday (2023-05-12)."),  # (unsure)
    ("It was a sunny day.", "It was a sunny day."),
])
def test_relative_dates_in_2023(text: str, resolved: str) -> None:
    assert resolve_relative_dates(text, date(2023, 5, 8)) == resolved


async def test_duplicates_are_dropped_per_speaker() -> None:
    drafts = await _observe(
        _user("m1", "Caroline: I love painting sunsets. I love painting sunsets!"),
        _assistant("m2", "Melanie: I love painting sunsets."),
        _user("m3", "Caroline: i LOVE painting   sunsets"),
    )
    assert [(d.text, d.source_message_ids) for d in drafts] == [
        ("Caroline said: I love painting sunsets.", ["m1"]),
        ("Melanie said: I love painting sunsets.", ["m2"]),
    ]


@pytest.mark.parametrize(("content", "speaker", "rest"), [
    ("Caroline: I went hiking.", "Caroline", "I went hiking."),
    ("Mary Ann Lee: We moved.", "Mary Ann Lee", "We moved."),
    ("Note: I moved to Berlin.", None, "Note: I moved to Berlin."),  # a label, not a name
    ("Error: connection refused", None, "Error: connection refused"),
    ("caroline: lower case", None, "caroline: lower case"),
    ("One Two Three Four: too many words", None, "One Two Three Four: too many words"),
    ("Here is my setup:\ncode", None, "Here is my setup:\ncode"),
])
def test_speaker_prefixes(content: str, speaker: str | None, rest: str) -> None:
    assert split_speaker(content) == (speaker, rest)


async def test_ai_assistant_pleasantries_are_still_skipped() -> None:
    answer = ("Sure! I'm glad to hear that. I can help you with planning the trip. As an AI, I don't have personal "
              "experiences. I hope you have a great time! Let me know if you need anything else.")
    drafts = await _observe(_user("m1", "I'm going to Rome next month."), _assistant("a1", answer))
    assert [(d.text, d.source_message_ids) for d in drafts] == [
        ("User stated: I'm going to Rome next month (2023-06).", ["m1"]),
    ]


async def test_an_ai_answer_with_a_label_is_not_a_person() -> None:
    drafts = await _observe(_user("m1", "How do I run tasks concurrently?"),
                            _assistant("a1", "Python: I think you should use asyncio here."))
    assert drafts == []


async def test_an_unprefixed_assistant_talking_like_a_person_is_kept() -> None:
    drafts = await _observe(_user("m1", "Is this your own painting?"),
                            _assistant("a1", "Yeah, I painted that lake sunrise last year! It's special to me."))
    assert [(d.text, d.priority) for d in drafts] == [
        ("Assistant stated: Yeah, I painted that lake sunrise last year (2022)!", "medium"),
    ]


async def test_first_person_in_an_ai_answer_is_not_personal() -> None:
    answer = ("Happy to help! I've compiled a list of hotels near the station. I understand your budget is tight. "
              "I would suggest booking early.")
    drafts = await _observe(_user("m1", "Find me a hotel in Rome."), _assistant("a1", answer))
    assert [d.text for d in drafts if d.source_message_ids == ["a1"]] == []


async def test_a_remembered_speaker_is_recognised_without_a_user_prefix() -> None:
    recent = [Observation("o1", "t", "th", "r", "ex0", "Melanie said: I run every morning.", "medium",
                          date(2023, 5, 7), 8, ["m0"])]
    result = await _result(_assistant("a1", "Melanie: I signed up for a pottery class yesterday."), recent=recent)
    assert [d.text for d in result.drafts] == ["Melanie said: I signed up for a pottery class yesterday (2023-05-07)."]
