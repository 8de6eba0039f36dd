"""Mistral AI's OpenAI-compatible API."""

from memgate_providers.base import ProviderSpec

SPEC = ProviderSpec(
    "mistral", "https://api.mistral.ai/v1", key_env="MISTRAL_API_KEY",
    models=("mistral-large-latest", "mistral-small-latest"),
)
