"""Together AI's OpenAI-compatible API."""

from memgate_providers.base import ProviderSpec

SPEC = ProviderSpec(
    "together", "https://api.together.xyz/v1", key_env="TOGETHER_API_KEY",
    models=("meta-llama/Llama-3.3-70B-Instruct-Turbo",),
)
