"""LLM providers: one interface, one small module per provider, a registry by prefix with
aliases and fallbacks, and a client that sends along the fallback chain."""

from memgate_providers.base import Provider, ProviderSpec
from memgate_providers.client import ProviderClient, UpstreamStatusError
from memgate_providers.config import ConfigError, GatewayConfig, Timeouts, load_config
from memgate_providers.registry import ProviderRegistry, Route

__all__ = [
    "ConfigError",
    "GatewayConfig",
    "Provider",
    "ProviderClient",
    "ProviderRegistry",
    "ProviderSpec",
    "Route",
    "Timeouts",
    "UpstreamStatusError",
    "load_config",
]
