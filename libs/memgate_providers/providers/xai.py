"""xAI (Grok) OpenAI-compatible API."""

from memgate_providers.base import ProviderSpec

SPEC = ProviderSpec(
    "xai", "https://api.x.ai/v1", key_env="XAI_API_KEY",
    models=("grok-4", "grok-3-mini"),
)
