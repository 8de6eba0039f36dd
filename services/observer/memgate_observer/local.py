"""The observer that needs no LLM: sentence-level, dated facts with provenance.

- A message that starts with a speaker prefix ("Caroline: I went to ...") is a person
  speaking, whatever its role: what they say about themselves, their plans, preferences and
  events is observed under their name ("Caroline said: I went to ..."); fillers (greetings,
  exclamations, compliments, reactions with no fact), questions and compliments addressed to
  the listener are not. A shared photo ("[shared a photo: ...]") is observed as such
  ("Caroline shared a photo: a sunset over a lake.").
- User sentences are authoritative: statements become observations ("User stated: ..."),
  requests too ("User asked: ..."); questions and pleasantries do not. Durable personal
  facts (names, preferences, constraints, plans, deadlines) are high priority; "I finished
  X" is completed; the rest medium.
- Assistant sentences count only when they state a fact, a decision or a commitment:
  commitments and recommendations medium, facts low; hedges, pleasantries, questions and
  echoes of what the user just said are skipped. In an assistant message that reads like a
  person talking (no pleasantries, no AI phrases, no markdown, short), first-person
  statements about themselves ("I painted that lake sunrise last year.") count like a
  user's.
- Every sentence needs a content word that is not a filler word or a speaker's name.
- Relative dates are resolved against the message's (UTC) date; the time of day is the
  message's. Each observation cites the one message it came from.
- Duplicates (same words, any case or punctuation) are dropped within the batch; the
  handler drops those the thread already has.
- Lines that look like memory markup ("- [high] 2020-01-01 | ...", "## 2024-05-01",
  "Current task: ...") are text someone typed, never observations.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from memgate_core.events import MessageRecord
from memgate_observer.base import ObservationDraft, ObserverInput, ObserverResult
from memgate_observer.dates import resolve_relative_dates
from memgate_observer.speech import (
    FILLER_WORDS,
    about_the_listener,
    is_filler,
    is_reaction,
    speaker_words,
    split_photos,
    split_speaker,
)
from memgate_observer.text import content_words, normalised, sentences, similarity

MAX_SENTENCE_CHARS = 400
MAX_ASSISTANT_FACTS = 5  # per assistant message
TASK_CHARS = 200

_MARKUP = re.compile(
    r"\[\s*(?:high|medium|low|completed)\s*\]|^\s*#{1,3}\s*\d{4}-\d{2}-\d{2}|^\s*current task\s*:|</?\s*memgate_memory\s*>",
    re.IGNORECASE,
)
_FILLER = re.compile(
    r"^(?:(?:hi|hello|hey|thanks|thank you|thx|ok|okay|yes|yeah|yep|no|nope|sure|great|cool|nice|awesome|perfect"
    r"|got it|sounds good|good|fine|alright|all right|wow|lol|bye|goodbye|cheers|please)\b(?:\s+(?:so much|a lot"
    r"|very much|again|for that|for (?:the|your) help|there|everyone|all)\b)?[\s!.,]*)+$",
    re.IGNORECASE,
)
_QUESTION_START = re.compile(
    r"^(?:what|how|why|when|where|who|whom|whose|which|is|are|am|was|were|do|does|did|can|could|would|will|"
    r"should|shall|may|have|has)\b",
    re.IGNORECASE,
)
_REQUEST = re.compile(
    r"^(?:please\b|pls\b|help me\b|i need you to\b|i want you to\b|i'd like you to\b|let's\b|write\b|create\b|make\b|"
    r"explain\b|tell me\b|show me\b|give me\b|generate\b|draft\b|translate\b|summari[sz]e\b|fix\b|find\b|list\b|"
    r"compare\b|plan\b|suggest\b|recommend\b|book\b|add\b|remind me\b|review\b|check\b|rewrite\b|update\b)",
    re.IGNORECASE,
)
_DURABLE = re.compile(
    r"\b(?:my name|call me|i prefer|i like|i love|i hate|i don't like|i dislike|always|never|allergic|"
    r"my (?:\w+ )?(?:wife|husband|partner|son|daughter|kids?|children|mother|mom|father|dad|brother|sister|friend|"
    r"boss|dog|cat|birthday|email|phone|address|job|company|team|budget|deadline|goal|plan)|i live|i work|i moved|"
    r"i was born|i use|i own|i have (?:a|an|two|three)|i decided|we decided|i will|i'll|i'm planning|i plan|"
    r"i'm going to|deadline|due (?:on|by)|remember|vegetarian|vegan)\b",
    re.IGNORECASE,
)
_COMPLETED = re.compile(
    r"\b(?:i(?:'ve| have)? (?:finished|completed|fixed|solved|submitted|shipped|sent|done)|i'm done|i am done|"
    r"it works now|that (?:worked|fixed it)|(?:is|are) (?:done|finished|fixed|resolved) now)\b",
    re.IGNORECASE,
)
_PLEASANTRY = re.compile(
    r"^(?:sure|of course|certainly|absolutely|great|glad|happy to|i'd be happy|i would be happy|you're welcome|"
    r"no problem|nice to meet|hope|i hope|let me know|feel free|here is|here's|here are|good question|"
    r"i understand|i see|as an ai|i am an ai|i'm an ai|i am an assistant|i'm an assistant|i'm sorry|sorry|"
    r"noted|thanks|thank you|hello|hi|hey|okay|ok|alright)\b",
    re.IGNORECASE,
)
_SELF = re.compile(r"\b(?:i am an? (?:ai|assistant|language model)|i love helping|as an ai)\b", re.IGNORECASE)
_HEDGE = re.compile(r"\b(?:might|maybe|perhaps|possibly|probably|i think|i believe|i guess|could be|not sure)\b",
                    re.IGNORECASE)
_COMMITMENT = re.compile(
    r"^(?:i'll|i will|i'm going to|we'll|we will|let's|i(?:'ve| have) (?:scheduled|booked|added|created|set|saved|"
    r"sent|updated|noted|reserved|ordered|changed|moved|cancelled|canceled|deployed|fixed|written|drafted))\b",
    re.IGNORECASE,
)
_RECOMMENDATION = re.compile(
    r"\b(?:we decided|decided to|the plan is|i recommend|i suggest|i'd recommend|i would recommend|you should|"
    r"the best (?:option|choice) is|go with)\b",
    re.IGNORECASE,
)
_FACT_VERB = re.compile(
    r"\b(?:is|are|was|were|has|have|had|costs?|takes?|opens?|closes?|starts?|ends?|runs?|requires?|supports?|"
    r"contains?|means?|equals?|weighs?|lasts?|leaves?|arrives?|departs?)\b",
    re.IGNORECASE,
)
_SPECIFIC = re.compile(r"\d|(?<=\s)[A-Z][a-z]+")  # a number, or a capitalised word inside the sentence
_PERSONAL = re.compile(  # a sentence in which the speaker talks about themselves
    r"^(?:(?:yeah|yes|yep|oh|well|actually|so|and|but|haha|lol|honestly|btw|by the way)[,!]?\s+)*"
    r"(?:i|i'm|i've|i'd|i was|my|we|we're|we've|we'd|our|me and|last \w+ i|yesterday i)\b",
    re.IGNORECASE,
)
_AI_FIRST_PERSON = re.compile(  # first-person phrases of an AI assistant, not of a person talking about themselves
    r"^(?:(?:yeah|yes|oh|well|actually|so|and|but)[,!]?\s+)*(?:i can|i could|i would|i'd|i cannot|i can't|"
    r"i'm (?:here|glad|happy|sorry|not|just|an?|unable|able|afraid|designed|programmed|built|trained|always)|"
    r"i am (?:here|glad|happy|sorry|not|just|an?|unable|able|afraid|designed|programmed|built|trained|always)|"
    r"i understand|i see|i hope|i don't|i do not|i recommend|i suggest|i'll|i will|i've (?:found|compiled|put|"
    r"listed|outlined|prepared|included|gathered)|i have (?:found|compiled|put|listed|outlined|prepared|included|"
    r"gathered)|my (?:apologies|knowledge|training|purpose|goal is to|capabilities|responses?))\b",
    re.IGNORECASE,
)
_AI_MESSAGE = re.compile(  # anywhere in an assistant message: it is an AI assistant's reply
    r"\b(?:as an ai|language model|i'm an ai|i am an ai|an ai assistant|i can help|i'd be happy to|happy to help|"
    r"glad to help|here to help|how can i (?:help|assist)|let me know|feel free|hope (?:this|that) helps|"
    r"i don't have (?:personal|access|the ability|real-time)|i can't (?:browse|access)|knowledge cutoff)\b"
    r"|```|^\s*(?:[-*•]|\d{1,3}[.)])\s+",
    re.IGNORECASE | re.MULTILINE,
)
PERSONAL_MESSAGE_MAX_WORDS = 120  # people chatting write short messages; AI answers run long


def _when(message: MessageRecord) -> datetime:
    return datetime.fromtimestamp(message.created_at, UTC)


def _is_question(sentence: str) -> bool:
    return sentence.endswith("?") or bool(_QUESTION_START.match(sentence) and not sentence.endswith("."))


def _clip(sentence: str) -> str:
    return sentence if len(sentence) <= MAX_SENTENCE_CHARS else sentence[: MAX_SENTENCE_CHARS - 1].rstrip() + "…"


_I_AM = re.compile(r"\b(?:i am|i'm) (?:an? |the )?([\w'-]+)", re.IGNORECASE)
# "I'm so glad", "I'm just saying": states of the moment, not who someone is ("I'm a nurse", "I'm allergic").
_NOT_IDENTITY = FILLER_WORDS | frozenset(
    "so really super just still not here feeling also off very totally truly pretty kinda kind always".split())


def _durable(sentence: str) -> bool:
    return bool(_DURABLE.search(sentence)) or any(m.group(1).casefold() not in _NOT_IDENTITY
                                                  for m in _I_AM.finditer(sentence))


def _statement_priority(sentence: str) -> str:
    if _COMPLETED.search(sentence):
        return "completed"
    return "high" if _durable(sentence) else "medium"


def _photo(who: str, caption: str) -> str:
    return f"{who} shared a photo: {caption}."


_OBSERVED_SPEAKER = re.compile(r"^([A-Z][\w'’-]*(?: [A-Z][\w'’-]*){0,2}) (?:said|shared a photo):")


def _speakers(batch: ObserverInput) -> tuple[dict[str, str], set[str]]:
    """Each message's speaker (by message id), and the casefolded name words of everyone speaking.

    A user message's "Name: " prefix always names its speaker. An assistant message's does
    only in a conversation between people: when a user message of the batch has one too, or
    the name already speaks in the thread's memory (so "Python: use asyncio" in an AI answer
    is not a person called Python)."""
    remembered: set[str] = set()
    for observation in batch.recent:
        m = _OBSERVED_SPEAKER.match(observation.text)
        if m:
            remembered.add(m.group(1))
    prefixed = [(m, name) for m in batch.messages if m.role in ("user", "assistant")
                for name in [split_speaker(m.content)[0]] if name is not None]
    people = any(m.role == "user" for m, _ in prefixed)
    speakers = {m.id: name for m, name in prefixed if m.role == "user" or people or name in remembered}
    known: set[str] = set()
    for name in [*speakers.values(), *remembered, *(m.name for m in batch.messages if m.name)]:
        known |= speaker_words(name)
    return speakers, known



TITLE_CHARS = 60


def local_title(opening: str) -> str:
    """The opening message's first sentence, cut at a word within TITLE_CHARS."""
    first = (sentences(opening) or [" ".join(opening.split())])[0].rstrip(" .!?;:,")
    if len(first) <= TITLE_CHARS:
        return first or "Conversation"
    cut = first[:TITLE_CHARS].rsplit(" ", 1)[0].rstrip(" .!?;:,")
    return f"{cut or first[:TITLE_CHARS]}…"


class LocalObserver:
    name = "local"

    async def title(self, opening: str) -> str:
        return local_title(opening)

    async def observe(self, batch: ObserverInput) -> ObserverResult:
        drafts: list[ObservationDraft] = []
        seen: set[str] = set()
        user_words: list[set[str]] = []  # what the user said in this batch: assistant echoes are skipped
        speakers, names = _speakers(batch)
        task: str | None = None
        for message in batch.messages:
            if message.role not in ("user", "assistant"):
                continue
            when = _when(message)
            speaker = speakers.get(message.id)
            body, captions = split_photos(split_speaker(message.content)[1] if speaker else message.content)
            if speaker is not None or message.role == "user":  # a person speaking, whichever role carries them
                found, request = self._statements(speaker, body, when, names)
                if message.role == "user":
                    task = request or task
            else:
                found = self._assistant(body, when, user_words, names)
            if message.role == "user":
                user_words.extend(content_words(sentence) for _, _, sentence in found)
            who = speaker or ("User" if message.role == "user" else "Assistant")
            found += [(_photo(who, caption), "medium", _photo(who, caption)) for caption in captions]
            for text, priority, key in found:
                self._add(drafts, seen, text, priority, message, when, key if speaker is None else text)
        if task is not None:
            task = task if len(task) <= TASK_CHARS else task[: TASK_CHARS - 1].rstrip() + "…"
        return ObserverResult(drafts, task)

    @staticmethod
    def _add(drafts: list[ObservationDraft], seen: set[str], text: str, priority: str, message: MessageRecord,
             when: datetime, sentence: str) -> None:
        key = normalised(sentence)
        if key in seen:
            return
        seen.add(key)
        drafts.append(ObservationDraft(text, priority, when.date(), [message.id], when.time().replace(second=0,
                                                                                                     microsecond=0)))

    @staticmethod
    def _skipped(sentence: str, names: set[str]) -> bool:
        """Markup, fillers, fragments and lines introducing what follows: never observations (questions aside)."""
        return bool(_MARKUP.search(sentence) or _FILLER.match(sentence) or len(sentence.split()) < 3
                    or sentence.endswith(":") or is_filler(sentence, names) or is_reaction(sentence))

    def _statements(self, speaker: str | None, body: str, when: datetime,
                    names: set[str]) -> tuple[list[tuple[str, str, str]], str | None]:
        """Observations from the user's message (`speaker` None) or a person speaking
        ("Caroline: ..."), and the message's request or question, if any."""
        found: list[tuple[str, str, str]] = []
        request: str | None = None
        for sentence in sentences(body):
            if _MARKUP.search(sentence) or _FILLER.match(sentence):
                continue
            if _is_question(sentence):
                request = request or sentence
                continue
            if self._skipped(sentence, names) or (
                    speaker is not None and (_SELF.search(sentence) or about_the_listener(sentence))):
                continue
            sentence = _clip(resolve_relative_dates(sentence, when.date()))
            if _REQUEST.match(sentence):
                request = request or sentence
            if speaker is not None:
                found.append((f"{speaker} said: {sentence}", _statement_priority(sentence), sentence))
            elif _REQUEST.match(sentence):
                found.append((f"User asked: {sentence}", "medium", sentence))
            else:
                found.append((f"User stated: {sentence}", _statement_priority(sentence), sentence))
        return found, request

    def _assistant(self, body: str, when: datetime, user_words: list[set[str]],
                   names: set[str]) -> list[tuple[str, str, str]]:
        found: list[tuple[str, str, str]] = []
        personal = len(body.split()) <= PERSONAL_MESSAGE_MAX_WORDS and not _AI_MESSAGE.search(body) and not any(
            _PLEASANTRY.match(s) or _SELF.search(s) for s in sentences(body))
        for sentence in sentences(body):
            if len(found) >= MAX_ASSISTANT_FACTS:
                break
            n = len(sentence.split())
            if n < 4 or n > 40 or sentence.endswith(":") or _MARKUP.search(sentence) or _is_question(sentence):
                continue
            if _PLEASANTRY.match(sentence) or _SELF.search(sentence) or _HEDGE.search(sentence):
                continue
            topic = content_words(sentence)
            if any(similarity(topic, said) >= 0.6 or (topic and topic <= said) for said in user_words):
                continue  # the assistant repeating the user
            if is_filler(sentence, names):
                continue
            sentence = _clip(resolve_relative_dates(sentence, when.date()))
            if _COMMITMENT.match(sentence):
                found.append((f"Assistant committed: {sentence}", "medium", sentence))
            elif _RECOMMENDATION.search(sentence):
                found.append((f"Assistant recommended: {sentence}", "medium", sentence))
            elif personal and _PERSONAL.match(sentence) and not _AI_FIRST_PERSON.match(sentence):
                found.append((f"Assistant stated: {sentence}", _statement_priority(sentence), sentence))
            elif _FACT_VERB.search(sentence) and _SPECIFIC.search(sentence):
                found.append((f"Assistant stated: {sentence}", "low", sentence))
        return found
