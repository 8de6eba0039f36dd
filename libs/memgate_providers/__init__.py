"""LLM providers: one interface, an OpenAI-compatible implementation, a registry by prefix."""

from memgate_providers.base import Provider, ProviderSpec
from memgate_providers.client import ProviderClient
from memgate_providers.registry import ProviderRegistry, Route

__all__ = ["Provider", "ProviderClient", "ProviderRegistry", "ProviderSpec", "Route"]
