"""The observer that needs no LLM: sentence-level, dated facts with provenance.

- User sentences are authoritative: statements become observations ("User stated: ..."),
  requests too ("User asked: ..."); questions and pleasantries do not. Durable personal
  facts (names, preferences, constraints, plans, deadlines) are high priority; "I finished
  X" is completed; the rest medium.
- Assistant sentences count only when they state a fact, a decision or a commitment:
  commitments and recommendations medium, facts low; hedges, pleasantries, questions and
  echoes of what the user just said are skipped.
- Relative dates are resolved against the message's (UTC) date; the time of day is the
  message's. Each observation cites the one message it came from.
- Duplicates (same words, any case or punctuation) are dropped within the batch; the
  handler drops those the thread already has.
- Lines that look like memory markup ("- [high] 2020-01-01 | ...", "## 2024-05-01",
  "Current task: ...") are text someone typed, never observations.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

from memgate_core.events import MessageRecord
from memgate_observer.base import ObservationDraft, ObserverInput, ObserverResult
from memgate_observer.dates import resolve_relative_dates
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
    r"\b(?:my name|i am|i'm|call me|i prefer|i like|i love|i hate|i don't like|i dislike|always|never|allergic|"
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


def _when(message: MessageRecord) -> datetime:
    return datetime.fromtimestamp(message.created_at, timezone.utc)


def _is_question(sentence: str) -> bool:
    return sentence.endswith("?") or bool(_QUESTION_START.match(sentence) and not sentence.endswith("."))


def _clip(sentence: str) -> str:
    return sentence if len(sentence) <= MAX_SENTENCE_CHARS else sentence[: MAX_SENTENCE_CHARS - 1].rstrip() + "…"


class LocalObserver:
    name = "local"

    async def observe(self, batch: ObserverInput) -> ObserverResult:
        drafts: list[ObservationDraft] = []
        seen: set[str] = set()
        user_words: list[set[str]] = []  # what the user said in this batch: assistant echoes are skipped
        task: str | None = None
        for message in batch.messages:
            when = _when(message)
            if message.role == "user":
                found, request = self._user(message, when)
                for text, priority, sentence in found:
                    user_words.append(content_words(sentence))
                    self._add(drafts, seen, text, priority, message, when, sentence)
                task = request or task
            elif message.role == "assistant":
                for text, priority, sentence in self._assistant(message, when, user_words):
                    self._add(drafts, seen, text, priority, message, when, sentence)
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

    def _user(self, message: MessageRecord, when: datetime) -> tuple[list[tuple[str, str, str]], str | None]:
        """Observations from one user message, and its request (the thread's current task), if any."""
        found: list[tuple[str, str, str]] = []
        request: str | None = None
        for sentence in sentences(message.content):
            if _MARKUP.search(sentence) or _FILLER.match(sentence):
                continue
            if _is_question(sentence):
                request = request or sentence
                continue
            if len(sentence.split()) < 3 or sentence.endswith(":"):  # too short, or introduces what follows
                continue
            sentence = _clip(resolve_relative_dates(sentence, when.date()))
            if _REQUEST.match(sentence):
                request = request or sentence
                found.append((f"User asked: {sentence}", "medium", sentence))
            elif _COMPLETED.search(sentence):
                found.append((f"User stated: {sentence}", "completed", sentence))
            else:
                priority = "high" if _DURABLE.search(sentence) else "medium"
                found.append((f"User stated: {sentence}", priority, sentence))
        return found, request

    def _assistant(self, message: MessageRecord, when: datetime,
                   user_words: list[set[str]]) -> list[tuple[str, str, str]]:
        found: list[tuple[str, str, str]] = []
        for sentence in sentences(message.content):
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
            sentence = _clip(resolve_relative_dates(sentence, when.date()))
            if _COMMITMENT.match(sentence):
                found.append((f"Assistant committed: {sentence}", "medium", sentence))
            elif _RECOMMENDATION.search(sentence):
                found.append((f"Assistant recommended: {sentence}", "medium", sentence))
            elif _FACT_VERB.search(sentence) and _SPECIFIC.search(sentence):
                found.append((f"Assistant stated: {sentence}", "low", sentence))
        return found
