"""Choosing the observer from configuration."""

from __future__ import annotations

import logging

from memgate_observer.base import Observer
from memgate_observer.llm import LLMObserver
from memgate_observer.local import LocalObserver
from memgate_providers import ProviderClient

log = logging.getLogger("memgate.observer")


def choose_observer(model: str, client: ProviderClient) -> tuple[Observer, str | None]:
    """The observer for `model`, and a notice to show users when memgate fell back to `local`."""
    if model == "local":
        return LocalObserver(), None
    if not client.registry.is_configured(model):
        notice = (
            f"Observer model '{model}' has no provider key configured; using the local observer "
            "(no LLM). Set the provider's API key or MEMGATE_OBSERVER_MODEL for better memory."
        )
        return LocalObserver(), notice
    return LLMObserver(client, model), None
