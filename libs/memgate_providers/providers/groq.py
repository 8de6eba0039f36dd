"""Groq: OpenAI-compatible API on Groq's LPU inference."""

from memgate_providers.base import ProviderSpec

SPEC = ProviderSpec(
    "groq", "https://api.groq.com/openai/v1", key_env="GROQ_API_KEY",
    models=("llama-3.3-70b-versatile", "llama-3.1-8b-instant"),
)
