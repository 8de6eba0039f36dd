"""The local Reflector, and the safety rules every reflection goes through."""

from __future__ import annotations

from datetime import date, timedelta

from memgate_core.tokens import count_tokens
from memgate_observer.base import ObservationDraft, ReflectionRejected
from memgate_observer.reflector import LocalReflector, reflect_safely, target_tokens
from memgate_store import Observation

DAY = date(2024, 5, 20)


def _obs(oid: str, text: str, priority: str = "medium", on: date = DAY, sources: list[str] | None = None) -> Observation:
    return Observation(oid, "t", "th", "r", "ex", text, priority, on, count_tokens(text), sources or [f"msg-{oid}"])


async def _local(observations: list[Observation], attempt: int = 1) -> list[ObservationDraft]:
    drafts, raw = await LocalReflector().reflect(observations, target_tokens=10, attempt=attempt)
    assert raw is None
    return drafts


async def test_exact_duplicates_merge_with_all_their_ids() -> None:
    drafts = await _local([_obs("a", "User stated: I live in Berlin."), _obs("b", "User stated: i live in BERLIN!", "high")])
    assert [(d.text, d.priority, d.derived_from) for d in drafts] == [("User stated: I live in Berlin.", "high", ["a", "b"])]


async def test_same_date_same_topic_lines_merge_and_keep_both_facts() -> None:
    drafts = await _local([
        _obs("a", "User stated: The Lisbon trip starts on 2024-06-03."),
        _obs("b", "User stated: The Lisbon trip starts on 2024-06-03 with Anna."),
        _obs("c", "User stated: My dog is called Rex."),
        _obs("d", "User stated: The Lisbon trip starts on 2024-06-03.", on=DAY - timedelta(days=1)),
    ])
    texts = {tuple(d.derived_from): d.text for d in drafts}
    # b says everything a says: b's text stands for both; d is an exact duplicate of a (other day).
    assert texts == {("d", "a", "b"): "User stated: The Lisbon trip starts on 2024-06-03 with Anna.",
                     ("c",): "User stated: My dog is called Rex."}


async def test_old_low_priority_lines_go_high_ones_always_stay() -> None:
    old = DAY - timedelta(days=30)
    drafts = await _local([
        _obs("a", "User stated: Likes the colour teal.", "low", on=old),
        _obs("b", "User stated: Is allergic to peanuts.", "high", on=old),
        _obs("c", "User stated: Mentioned rain today.", "low"),
        _obs("d", "User stated: Old medium context about builds.", "medium", on=old),
    ])
    assert sorted(i for d in drafts for i in d.derived_from) == ["b", "c", "d"]
    stronger = await _local([
        _obs("a", "User stated: Likes the colour teal.", "low", on=old),
        _obs("b", "User stated: Is allergic to peanuts.", "high", on=old),
        _obs("c", "User stated: Mentioned rain today.", "low"),
        _obs("d", "User stated: Old medium context about builds.", "medium", on=old - timedelta(days=30)),
    ], attempt=2)
    assert sorted(i for d in stronger for i in d.derived_from) == ["b", "c"]


class _Scripted:
    """A reflector that answers from a script, one entry per attempt."""

    name = "scripted"

    def __init__(self, *answers: list[ObservationDraft] | Exception) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[int, int, str | None]] = []

    async def reflect(self, observations, *, target_tokens, attempt, problem=None):  # type: ignore[no-untyped-def]
        self.calls.append((attempt, target_tokens, problem))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer, "raw answer"


INPUTS = [
    _obs("a", "User stated: My name is Dana Smith and I live in Berlin.", "high", sources=["m1", "m2"]),
    _obs("b", "User stated: Dana lives in Berlin, Germany.", "medium", sources=["m3"]),
    _obs("c", "User stated: Likes tea.", "low", sources=["m2", "m4"]),
]
INPUT_TOKENS = sum(o.tokens for o in INPUTS)


def _draft(text: str, *derived: str) -> ObservationDraft:
    return ObservationDraft(text, "high", DAY, [], None, list(derived))


async def test_a_smaller_reflection_is_accepted_with_the_union_of_sources() -> None:
    reflector = _Scripted([_draft("Dana Smith lives in Berlin.", "a", "b"), _draft("Likes tea.", "c")])
    outcome = await reflect_safely(reflector, INPUTS, budget=10)
    assert outcome.drafts is not None and outcome.attempts == 1
    assert [d.source_message_ids for d in outcome.drafts] == [["m1", "m2", "m3"], ["m2", "m4"]]
    assert outcome.output_tokens < outcome.input_tokens == INPUT_TOKENS
    assert reflector.calls == [(1, 5, None)]


async def test_not_smaller_is_retried_with_stronger_compression_then_rejected() -> None:
    bloated = [_draft(o.text + " Really.", o.id) for o in INPUTS]
    reflector = _Scripted(bloated, bloated)
    outcome = await reflect_safely(reflector, INPUTS, budget=10)
    assert outcome.drafts is None and outcome.attempts == 2
    assert outcome.error is not None and outcome.error.startswith("not smaller than its input")
    assert outcome.raw_output == "raw answer"
    assert [c[0] for c in reflector.calls] == [1, 2]
    assert reflector.calls[1][1] < reflector.calls[0][1]  # a smaller target the second time
    assert reflector.calls[1][2] is not None and "not smaller" in reflector.calls[1][2]


async def test_a_retry_that_shrinks_is_accepted() -> None:
    reflector = _Scripted([_draft(o.text + " Really.", o.id) for o in INPUTS], [_draft("Dana, Berlin, tea.", "a", "b", "c")])
    outcome = await reflect_safely(reflector, INPUTS, budget=10)
    assert outcome.drafts is not None and outcome.attempts == 2
    assert outcome.drafts[0].source_message_ids == ["m1", "m2", "m3", "m4"]


async def test_empty_and_malformed_results_are_rejected() -> None:
    outcome = await reflect_safely(_Scripted([], ReflectionRejected("malformed reflector output: x", "junk")),
                                   INPUTS, budget=10)
    assert outcome.drafts is None
    assert outcome.error == "malformed reflector output: x" and outcome.raw_output == "junk"
    outcome = await reflect_safely(_Scripted([], []), INPUTS, budget=10)
    assert outcome.drafts is None and outcome.error == "empty result"


async def test_drafts_must_name_known_inputs() -> None:
    outcome = await reflect_safely(_Scripted([_draft("x", "zzz")], [_draft("y")]), INPUTS, budget=10)
    assert outcome.drafts is None and "does not name" in (outcome.error or "")


async def test_local_reflection_that_cannot_shrink_is_rejected() -> None:
    distinct = [_obs("a", "User stated: Is allergic to peanuts.", "high"),
                _obs("b", "User stated: Works at Acme as a welder.", "high")]
    outcome = await reflect_safely(LocalReflector(), distinct, budget=1)
    assert outcome.drafts is None and outcome.attempts == 2
    assert (outcome.error or "").startswith("not smaller")


def test_targets() -> None:
    assert target_tokens(40_000, 50_000, 1) == 20_000
    assert target_tokens(40_000, 50_000, 2) == 10_000
    assert target_tokens(40_000, 100, 1) == 50
