"""OpenAI: the reference Chat Completions API."""

from memgate_providers.base import ProviderSpec

SPEC = ProviderSpec(
    "openai", "https://api.openai.com/v1", key_env="OPENAI_API_KEY",
    models=("gpt-4o-mini", "gpt-4o", "gpt-4.1", "gpt-4.1-mini"),
)
