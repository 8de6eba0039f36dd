"""The providers memgate knows by name, one small module each.

A module has `SPEC` (a `ProviderSpec`: name, default base URL, key variable, a few models)
and, when the provider needs anything beyond the OpenAI-compatible implementation,
`build(spec, env) -> Provider`. Adding a provider: one module here plus one line in `MODULES`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import ModuleType

from memgate_providers.base import Provider, ProviderSpec
from memgate_providers.openai_compatible import OpenAICompatibleProvider
from memgate_providers.providers import (
    anthropic,
    deepseek,
    fireworks,
    google,
    groq,
    mistral,
    ollama,
    openai,
    openrouter,
    together,
    vllm,
    xai,
)

MODULES: tuple[ModuleType, ...] = (
    openai, google, anthropic, openrouter, groq, mistral, deepseek, xai, together, fireworks, ollama, vllm,
)

Builder = Callable[[ProviderSpec, Mapping[str, str]], Provider]


def _default_build(spec: ProviderSpec, env: Mapping[str, str]) -> Provider:
    return OpenAICompatibleProvider(spec)


KNOWN_SPECS: dict[str, ProviderSpec] = {m.SPEC.name: m.SPEC for m in MODULES}
BUILDERS: dict[str, Builder] = {m.SPEC.name: getattr(m, "build", _default_build) for m in MODULES}
# Other names people use for the same provider prefix: gemini -> google, claude -> anthropic.
PROVIDER_ALIASES: dict[str, str] = {alias: m.SPEC.name for m in MODULES for alias in m.SPEC.aliases}


def build_provider(spec: ProviderSpec, env: Mapping[str, str]) -> Provider:
    """The provider for `spec`: the module's own class for a known name, else OpenAI-compatible."""
    return BUILDERS.get(spec.name, _default_build)(spec, env)


def canonical_name(name: str) -> str:
    name = name.strip().lower()
    return PROVIDER_ALIASES.get(name, name)
