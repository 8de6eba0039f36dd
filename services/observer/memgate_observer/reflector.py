"""The Reflector: condenses a thread's active observations into a new, smaller generation.

`reflect_safely` is the only way a reflection reaches memory. It tries once, and once
more with stronger compression if the first result is malformed, empty or not smaller;
a second rejection is a failure, and memory stays as it was. A reflection can never
grow memory, wipe it, or loop.

`LocalReflector` needs no LLM: it drops exact duplicates, merges same-date lines about
the same topic, drops old low-priority lines, and keeps every high-priority one.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import msgspec

from memgate_core.tokens import count_tokens
from memgate_observer.base import ObservationDraft, ReflectionRejected, Reflector
from memgate_observer.text import content_words, normalised, similarity
from memgate_store import Observation

log = logging.getLogger("memgate.observer.reflector")

_RANK = {"high": 3, "medium": 2, "completed": 1, "low": 0}
_PREFIXES = ("User stated: ", "User asked: ", "Assistant stated: ", "Assistant committed: ", "Assistant recommended: ")


class ReflectionOutcome(msgspec.Struct, frozen=True):
    drafts: list[ObservationDraft] | None  # None: rejected
    input_tokens: int
    output_tokens: int = 0
    attempts: int = 0
    error: str | None = None
    raw_output: str | None = None


def target_tokens(budget: int, input_tokens: int, attempt: int) -> int:
    """What a reflection aims for: half the budget, a quarter on the stronger retry."""
    return max(1, min(budget, input_tokens) // (2 if attempt == 1 else 4))


def with_provenance(drafts: list[ObservationDraft], inputs: list[Observation]) -> list[ObservationDraft]:
    """Each reflected draft's sources: the union of the sources of the observations it replaces."""
    by_id = {o.id: o for o in inputs}
    out = []
    for d in drafts:
        sources = list(dict.fromkeys(s for oid in d.derived_from for s in by_id[oid].source_message_ids))
        out.append(msgspec.structs.replace(d, source_message_ids=sources))
    return out


async def reflect_safely(reflector: Reflector, inputs: list[Observation], *, budget: int) -> ReflectionOutcome:
    input_tokens = sum(o.tokens for o in inputs)
    problem: str | None = None
    raw: str | None = None
    for attempt in (1, 2):
        target = target_tokens(budget, input_tokens, attempt)
        try:
            drafts, raw = await reflector.reflect(inputs, target_tokens=target, attempt=attempt, problem=problem)
        except ReflectionRejected as exc:
            problem, raw = exc.error, exc.raw_output
            log.warning("reflection attempt %d rejected: %s", attempt, problem)
            continue
        known = {o.id for o in inputs}
        output_tokens = sum(count_tokens(d.text) for d in drafts)
        if not drafts:
            problem = "empty result"
        elif any(not d.derived_from or not set(d.derived_from) <= known for d in drafts):
            problem = "a reflected observation does not name the observations it replaces"
        elif output_tokens >= input_tokens:
            problem = f"not smaller than its input ({output_tokens} tokens for {input_tokens})"
        else:
            return ReflectionOutcome(with_provenance(drafts, inputs), input_tokens, output_tokens, attempt)
        log.warning("reflection attempt %d rejected: %s", attempt, problem)
    return ReflectionOutcome(None, input_tokens, attempts=2, error=problem, raw_output=raw)


def _body(text: str) -> str:
    for prefix in _PREFIXES:
        if text.startswith(prefix):
            return text[len(prefix):]
    return text


class _Group:
    """Observations being merged into one line."""

    def __init__(self, o: Observation) -> None:
        self.newest = o
        self.members = [o]
        self.dates = {o.observed_on}
        self.text = o.text
        self.priority = o.priority
        self.words = content_words(o.text)

    def absorb(self, o: Observation) -> None:
        """Add `o` (observations come oldest first): its words join, and its time is the group's."""
        self.members.append(o)
        self.dates.add(o.observed_on)
        self.newest = o
        other = content_words(o.text)
        if not other <= self.words:  # it adds something: keep both, sharing one prefix
            if self.words <= other:
                self.text = o.text
            else:
                self.text = f"{self.text.rstrip('.')}; {_body(o.text)}"
        self.words |= other
        if _RANK[o.priority] > _RANK[self.priority]:
            self.priority = o.priority

    def draft(self) -> ObservationDraft:
        return ObservationDraft(self.text, self.priority, self.newest.observed_on, [], self.newest.observed_time,
                                [m.id for m in self.members])


class LocalReflector:
    name = "local"

    def __init__(self, *, low_max_age_days: int = 7, medium_max_age_days: int = 30) -> None:
        self.low_max_age = timedelta(days=low_max_age_days)
        self.medium_max_age = timedelta(days=medium_max_age_days)

    async def reflect(self, observations: list[Observation], *, target_tokens: int, attempt: int,
                      problem: str | None = None) -> tuple[list[ObservationDraft], str | None]:
        if not observations:
            return [], None
        newest = max(o.observed_on for o in observations)
        stronger = attempt > 1
        merge_at = 0.34 if stronger else 0.5
        kept: list[Observation] = []
        for o in observations:
            age = newest - o.observed_on
            if o.priority == "low" and (age > self.low_max_age or (stronger and age > timedelta(0))):
                continue
            if stronger and o.priority in ("medium", "completed") and age > self.medium_max_age:
                continue
            kept.append(o)
        groups: list[_Group] = []
        by_key: dict[str, _Group] = {}
        for o in sorted(kept, key=lambda o: o.observed_on):  # stable: same-day lines keep their order
            key = normalised(_body(o.text))
            if key in by_key:  # exact duplicate (any date)
                by_key[key].absorb(o)
                continue
            words = content_words(o.text)
            same_topic = next((g for g in reversed(groups) if o.observed_on in g.dates
                               and similarity(words, g.words) >= merge_at), None)
            if same_topic is not None:
                same_topic.absorb(o)
            else:
                same_topic = _Group(o)
                groups.append(same_topic)
            by_key[key] = same_topic
        return [g.draft() for g in groups], None
