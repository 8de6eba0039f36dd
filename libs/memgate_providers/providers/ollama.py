"""Ollama on this machine (its OpenAI-compatible API); needs no key.

No models are listed by default: ask `ProviderClient.fetch_models(["ollama"])` for what is
pulled locally, or list them under `models` in the config file.
"""

from memgate_providers.base import ProviderSpec

SPEC = ProviderSpec("ollama", "http://127.0.0.1:11434/v1")
