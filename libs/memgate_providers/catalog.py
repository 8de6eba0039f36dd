"""The providers memgate knows by name: default base URL, key variable, a few models.

Anthropic and Google are reached through their OpenAI-compatible endpoints, so they share
the OpenAI-compatible implementation; every base URL can be overridden by env.
"""

from __future__ import annotations

from memgate_providers.base import ProviderSpec

KNOWN_PROVIDERS: tuple[ProviderSpec, ...] = (
    ProviderSpec("openai", "https://api.openai.com/v1", key_env="OPENAI_API_KEY",
                 models=("gpt-4o-mini", "gpt-4o", "gpt-4.1", "gpt-4.1-mini")),
    ProviderSpec("google", "https://generativelanguage.googleapis.com/v1beta/openai", key_env="GEMINI_API_KEY",
                 models=("gemini-2.5-flash", "gemini-2.5-pro")),
    ProviderSpec("anthropic", "https://api.anthropic.com/v1", key_env="ANTHROPIC_API_KEY",
                 models=("claude-sonnet-4-5", "claude-haiku-4-5")),
    ProviderSpec("openrouter", "https://openrouter.ai/api/v1", key_env="OPENROUTER_API_KEY"),
    ProviderSpec("groq", "https://api.groq.com/openai/v1", key_env="GROQ_API_KEY"),
    ProviderSpec("mistral", "https://api.mistral.ai/v1", key_env="MISTRAL_API_KEY"),
    ProviderSpec("deepseek", "https://api.deepseek.com/v1", key_env="DEEPSEEK_API_KEY"),
    ProviderSpec("xai", "https://api.x.ai/v1", key_env="XAI_API_KEY"),
    ProviderSpec("together", "https://api.together.xyz/v1", key_env="TOGETHER_API_KEY"),
    ProviderSpec("fireworks", "https://api.fireworks.ai/inference/v1", key_env="FIREWORKS_API_KEY"),
    # Local servers need no key.
    ProviderSpec("ollama", "http://127.0.0.1:11434/v1"),
    ProviderSpec("vllm", "http://127.0.0.1:8000/v1"),
)

# Other names people use for the same provider.
ALIASES = {"gemini": "google", "claude": "anthropic"}
