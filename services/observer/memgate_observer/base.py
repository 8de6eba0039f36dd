"""What observers and reflectors take and produce, and the interfaces they implement."""

from __future__ import annotations

from datetime import date, time
from typing import Protocol

import msgspec

from memgate_core.events import ExchangeCompleted, MessageRecord
from memgate_store import Observation

PRIORITIES = ("high", "medium", "low", "completed")


class ObservationDraft(msgspec.Struct, frozen=True):
    """One observation before it is stored: the fact, its priority and time, and provenance."""

    text: str
    priority: str
    observed_on: date
    source_message_ids: list[str]
    observed_time: time | None = None
    derived_from: list[str] = []  # reflected drafts: the observations they replace


class ObserverInput(msgspec.Struct, frozen=True):
    """One thread's pending exchanges (a debounced burst), and what memory already holds."""

    tenant: str
    thread_id: str
    resource_id: str
    exchanges: list[ExchangeCompleted]  # oldest first
    recent: list[Observation] = []  # the thread's newest current observations, oldest first
    current_task: str | None = None

    @property
    def messages(self) -> list[MessageRecord]:
        return [m for e in self.exchanges for m in e.messages]

    @property
    def exchange_ids(self) -> list[str]:
        return [e.exchange_id for e in self.exchanges]


class ObserverResult(msgspec.Struct, frozen=True):
    drafts: list[ObservationDraft]
    current_task: str | None = None  # None: unchanged


class ObserverFailed(Exception):
    """The observer's output was unusable (after its retry): recorded as a failure, never stored."""

    def __init__(self, error: str, raw_output: str | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.raw_output = raw_output


class Observer(Protocol):
    name: str

    async def observe(self, batch: ObserverInput) -> ObserverResult:
        """Observations of the batch's messages; raises ObserverFailed for unusable output."""
        ...

    async def title(self, opening: str) -> str:
        """A short title for a conversation that opens with the user's message `opening`."""
        ...


class ReflectionRejected(Exception):
    """One reflection attempt produced something unusable (malformed, empty or not smaller)."""

    def __init__(self, error: str, raw_output: str | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.raw_output = raw_output


class Reflector(Protocol):
    name: str

    async def reflect(self, observations: list[Observation], *, target_tokens: int, attempt: int,
                      problem: str | None = None) -> tuple[list[ObservationDraft], str | None]:
        """A shorter rewrite of `observations`, and the model's raw answer (None without a model).

        Each draft's derived_from lists the observations it replaces. attempt 2 follows a
        rejected attempt 1 (`problem` says why) and compresses harder. Raises
        ReflectionRejected for malformed output.
        """
        ...
