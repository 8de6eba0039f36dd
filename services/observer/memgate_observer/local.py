"""The observer that needs no LLM: dated facts from what the user states.

Thin on purpose: statements (not questions) of the user become observations, with
a higher priority for durable personal facts (names, preferences, constraints).
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

from memgate_core.events import ExchangeCompleted
from memgate_observer.base import ObservationDraft

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
_DURABLE = re.compile(
    r"\b(my name|i am|i'm|call me|i prefer|i like|i love|i hate|i don't like|i dislike|always|never|"
    r"allergic|my (wife|husband|partner|son|daughter|kids?|dog|cat|birthday|email|phone|job|company|team)|"
    r"i live|i work|i moved|deadline|remember)\b",
    re.IGNORECASE,
)
_FILLER = re.compile(r"^(hi|hello|hey|thanks|thank you|ok|okay|yes|no|sure)\b[\s!.,]*$", re.IGNORECASE)


class LocalObserver:
    name = "local"

    async def observe(self, event: ExchangeCompleted) -> list[ObservationDraft]:
        drafts: list[ObservationDraft] = []
        seen: set[str] = set()
        for message in event.messages:
            if message.role != "user":
                continue
            on = datetime.fromtimestamp(message.created_at, timezone.utc).date()
            for sentence in _SENTENCE_END.split(message.content):
                sentence = " ".join(sentence.split())
                if len(sentence.split()) < 3 or sentence.endswith("?") or _FILLER.match(sentence):
                    continue
                key = sentence.lower()
                if key in seen:
                    continue
                seen.add(key)
                priority = "high" if _DURABLE.search(sentence) else "medium"
                drafts.append(ObservationDraft(f"User stated: {sentence}", priority, on, [message.id]))
        return drafts
