"""Choosing the observer and the reflector from configuration."""

from __future__ import annotations

import logging

from memgate_observer.base import Observer, Reflector
from memgate_observer.llm import LLMObserver, LLMReflector
from memgate_observer.local import LocalObserver
from memgate_observer.reflector import LocalReflector
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


def choose_reflector(model: str, client: ProviderClient) -> tuple[Reflector, str | None]:
    """The reflector for `model` (MEMGATE_REFLECTOR_MODEL, else the observer's), with the same fallback."""
    if model == "local":
        return LocalReflector(), None
    if not client.registry.is_configured(model):
        notice = (
            f"Reflector model '{model}' has no provider key configured; using the local reflector (no LLM)."
        )
        return LocalReflector(), notice
    return LLMReflector(client, model), None
