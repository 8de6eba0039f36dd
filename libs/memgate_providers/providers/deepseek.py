"""DeepSeek's OpenAI-compatible API."""

from memgate_providers.base import ProviderSpec

SPEC = ProviderSpec(
    "deepseek", "https://api.deepseek.com/v1", key_env="DEEPSEEK_API_KEY",
    models=("deepseek-chat", "deepseek-reasoner"),
)
