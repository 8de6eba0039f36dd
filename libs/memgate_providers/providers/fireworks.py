"""Fireworks AI's OpenAI-compatible API."""

from memgate_providers.base import ProviderSpec

SPEC = ProviderSpec(
    "fireworks", "https://api.fireworks.ai/inference/v1", key_env="FIREWORKS_API_KEY",
    models=("accounts/fireworks/models/llama-v3p3-70b-instruct",),
)
