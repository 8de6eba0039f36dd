"""Routing a model name (`provider/model`) to a provider, configured from env."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

import msgspec

from memgate_core.errors import InvalidRequest
from memgate_providers.base import Provider, ProviderSpec
from memgate_providers.catalog import ALIASES, KNOWN_PROVIDERS
from memgate_providers.openai_compatible import OpenAICompatibleProvider

_OVERRIDE = re.compile(r"^MEMGATE_PROVIDER_([A-Z0-9_]+)_(BASE_URL|API_KEY)$")


class Route(msgspec.Struct, frozen=True):
    provider: str
    model: str  # the model name the provider expects (prefix removed)


class ProviderRegistry:
    def __init__(self, providers: Mapping[str, Provider], default_provider: str = "openai") -> None:
        self.providers = dict(providers)
        self.default_provider = default_provider

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "ProviderRegistry":
        env = os.environ if env is None else env
        specs = {s.name: s for s in KNOWN_PROVIDERS}
        overrides: dict[str, dict[str, str]] = {}
        for var, value in env.items():
            if match := _OVERRIDE.match(var):
                name = match.group(1).lower()
                overrides.setdefault(ALIASES.get(name, name), {})[match.group(2)] = value
        providers: dict[str, Provider] = {}
        for name in specs.keys() | overrides.keys():
            spec = specs.get(name)
            over = overrides.get(name, {})
            if spec is None:
                if "BASE_URL" not in over:
                    continue  # a key for an unknown provider without a base URL: nothing to route to
                # A custom OpenAI-compatible provider (vLLM, LM Studio, a company proxy...).
                spec = ProviderSpec(name, over["BASE_URL"], key_env=None)
            key = over.get("API_KEY") or (env.get(spec.key_env) if spec.key_env else None)
            if name == "google":
                key = key or env.get("GOOGLE_API_KEY")
            spec = msgspec.structs.replace(spec, base_url=over.get("BASE_URL", spec.base_url), api_key=key or None)
            providers[name] = OpenAICompatibleProvider(spec)
        default = env.get("MEMGATE_DEFAULT_PROVIDER", "openai").strip().lower()
        return cls(providers, default_provider=ALIASES.get(default, default))

    def route(self, model: str) -> tuple[Provider, Route]:
        prefix, sep, rest = model.partition("/")
        if sep and rest:
            name = ALIASES.get(prefix.lower(), prefix.lower())
            provider = self.providers.get(name)
            if provider is None:
                known = ", ".join(sorted(self.providers))
                raise InvalidRequest(
                    f"Unknown provider '{prefix}' in model '{model}'. Use 'provider/model' with one of: {known}; "
                    "or declare a custom provider with MEMGATE_PROVIDER_<NAME>_BASE_URL.",
                    code="unknown_provider", param="model",
                )
            return provider, Route(name, rest)
        provider = self.providers.get(self.default_provider)
        if provider is None:
            raise InvalidRequest(f"Model '{model}' has no provider prefix and no default provider is configured.",
                                 code="unknown_provider", param="model")
        return provider, Route(self.default_provider, model)

    def is_configured(self, model: str) -> bool:
        try:
            provider, _ = self.route(model)
        except InvalidRequest:
            return False
        return provider.spec.configured
