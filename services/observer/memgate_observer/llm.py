"""The LLM Observer: the prompt in prompt.py, sent through the provider layer."""

from __future__ import annotations

import logging

from memgate_core.events import ExchangeCompleted
from memgate_observer.base import ObservationDraft
from memgate_observer.prompt import MalformedObserverOutput, build_messages, parse_output
from memgate_providers import ProviderClient

log = logging.getLogger("memgate.observer.llm")


class LLMObserver:
    def __init__(self, client: ProviderClient, model: str) -> None:
        self.client = client
        self.model = model
        self.name = f"llm:{model}"

    async def observe(self, event: ExchangeCompleted) -> list[ObservationDraft]:
        messages = build_messages(event)
        last_error: MalformedObserverOutput | None = None
        for _ in range(2):  # malformed output is retried once, then it is a failure, never memory
            text = await self.client.complete_text(self.model, messages, temperature=0)
            try:
                return parse_output(text, event)
            except MalformedObserverOutput as exc:
                log.warning("observer output malformed for exchange %s: %s", event.exchange_id, exc)
                last_error = exc
        assert last_error is not None
        raise last_error
