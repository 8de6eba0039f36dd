"""What an observer produces, and the interface both observers (local, LLM) implement."""

from __future__ import annotations

from datetime import date
from typing import Protocol

import msgspec

from memgate_core.events import ExchangeCompleted

PRIORITIES = ("high", "medium", "low", "completed")


class ObservationDraft(msgspec.Struct, frozen=True):
    """One observation before it is stored: the fact, its priority and date, and provenance."""

    text: str
    priority: str
    observed_on: date
    source_message_ids: list[str]


class Observer(Protocol):
    name: str

    async def observe(self, event: ExchangeCompleted) -> list[ObservationDraft]: ...
