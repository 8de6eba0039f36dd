"""Routing a model name to providers: `provider/model`, aliases, fallback chains.

Configured from the known provider modules (`memgate_providers.providers`), the optional
config file (`MEMGATE_CONFIG`) and env, in increasing precedence.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from memgate_core.errors import InvalidRequest
from memgate_providers.base import Provider, ProviderSpec
from memgate_providers.config import ConfigError, GatewayConfig, ProviderConfig, config_from_env, toml_key
from memgate_providers.providers import KNOWN_SPECS, build_provider, canonical_name

_OVERRIDE = re.compile(r"^MEMGATE_PROVIDER_([A-Z0-9_]+)_(BASE_URL|API_KEY)$")
_PROVIDER_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


class Route(msgspec.Struct, frozen=True):
    provider: str
    model: str  # the model name the provider expects (prefix removed)

    @property
    def name(self) -> str:
        """`provider/model`, e.g. for a response header saying which route answered."""
        return f"{self.provider}/{self.model}"


NO_KEYS: Mapping[str, str | None] = {}  # memgate's own keys for every provider


def usable(provider: Provider, route: Route, api_keys: Mapping[str, str | None]) -> bool:
    """Whether `route` can go out: with the caller's key for its provider (`api_keys`: by
    provider; None, a key the caller has but that cannot be read: never memgate's in its
    place), else with memgate's own."""
    if route.provider in api_keys:
        return api_keys[route.provider] is not None
    return provider.spec.configured


class ProviderRegistry:
    def __init__(
        self,
        providers: Mapping[str, Provider],
        default_provider: str = "openai",
        *,
        aliases: Mapping[str, str] | None = None,
        fallbacks: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        """`aliases`: name -> model; `fallbacks`: model or alias -> models tried after it.

        Raises ValueError (ConfigError) when an alias or fallback does not route.
        """
        self.providers = dict(providers)
        self.default_provider = default_provider
        self.aliases: dict[str, str] = {}
        for name, target in (aliases or {}).items():
            if target in (aliases or {}):
                raise ConfigError(f"aliases.{toml_key(name)}: {target!r} is itself an alias; "
                                  "point it at a provider/model.")
            self._checked(target, f"aliases.{toml_key(name)}")
            self.aliases[name] = target
        self._fallbacks_by_alias: dict[str, list[tuple[Provider, Route]]] = {}
        self._fallbacks_by_route: dict[Route, list[tuple[Provider, Route]]] = {}
        for key, targets in (fallbacks or {}).items():
            chain = [self._checked(t, f"fallbacks.{toml_key(key)}[{i}]") for i, t in enumerate(targets)]
            if key in self.aliases:
                self._fallbacks_by_alias[key] = chain
            else:
                self._fallbacks_by_route[self._checked(key, f"fallbacks.{toml_key(key)}")[1]] = chain

    # ------------------------------------------------------------------ building

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, *, config: GatewayConfig | None = None
    ) -> ProviderRegistry:
        """Known providers + the config file (MEMGATE_CONFIG, unless `config` is given) + env.

        For a provider's base URL and key, env wins over the file. Raises ConfigError.
        """
        env = os.environ if env is None else env
        config = config_from_env(env) if config is None else config
        source = config.source
        files: dict[str, tuple[str, ProviderConfig]] = {}
        for raw_name, entry in config.providers.items():
            name = canonical_name(raw_name)
            if not _PROVIDER_NAME.match(name):
                raise ConfigError(f"{source}: providers.{raw_name}: a provider name is letters, digits, "
                                  "'_', '-' or '.', and cannot contain '/'.")
            if name in files:
                raise ConfigError(f"{source}: providers.{raw_name} and providers.{files[name][0]} are the same "
                                  f"provider ({name}).")
            files[name] = (raw_name, entry)
        overrides = _env_overrides(env)
        for env_name, over in overrides.items():  # (known providers' too: each is checked once, here)
            if not over.get("BASE_URL", "https://").startswith(("http://", "https://")):
                raise ConfigError(f"MEMGATE_PROVIDER_{env_name}_BASE_URL must start with http:// or https://, "
                                  f"got {over['BASE_URL'][:200]!r}.")

        providers: dict[str, Provider] = {}
        for name in [*KNOWN_SPECS, *(n for n in files if n not in KNOWN_SPECS)]:
            raw_name, entry = files.get(name, (name, ProviderConfig()))
            over = overrides.pop(_env_name(name), {})
            base = KNOWN_SPECS.get(name)
            if base is not None and base.key_env is None and name not in files and not over:
                # A keyless server on this machine (ollama, vllm) is routed to only when
                # configured: otherwise any key could make memgate call local ports.
                continue
            if base is None and not (over.get("BASE_URL") or entry.base_url):
                raise ConfigError(f"{source}: providers.{raw_name}.base_url is required for a custom provider "
                                  f"(or set MEMGATE_PROVIDER_{_env_name(name)}_BASE_URL).")
            providers[name] = build_provider(_spec(name, base, entry, over, env), env)
        for env_name, over in overrides.items():
            if "BASE_URL" not in over:
                continue  # a key for an unknown provider without a base URL: nothing to route to
            name = env_name.lower()  # a custom OpenAI-compatible provider (vLLM, LM Studio, a company proxy...)
            providers[name] = build_provider(_spec(name, None, ProviderConfig(), over, env), env)

        default = canonical_name(env.get("MEMGATE_DEFAULT_PROVIDER") or "openai")  # (empty: unset, as for every MEMGATE_*)
        if default not in providers:  # (a typo here made every unprefixed model a 400 naming no cause)
            where = (f"; it needs MEMGATE_PROVIDER_{_env_name(default)}_BASE_URL first" if default in KNOWN_SPECS
                     else f" (known: {', '.join(sorted(providers))})")
            raise ConfigError(f"MEMGATE_DEFAULT_PROVIDER names no configured provider: {default[:100]!r}{where}.")
        try:
            return cls(providers, default_provider=default, aliases=config.aliases, fallbacks=config.fallbacks)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None

    # ------------------------------------------------------------------ routing

    def resolve(self, model: str) -> str:
        """The model an alias stands for; any other name unchanged."""
        return self.aliases.get(model, model)

    def route(self, model: str) -> tuple[Provider, Route]:
        """The primary route of a model name or alias; raises InvalidRequest (400) if none."""
        model = self.resolve(model)
        prefix, sep, rest = model.partition("/")
        if sep and rest:
            name = canonical_name(prefix)
            provider = self.providers.get(name)
            if provider is None and name in KNOWN_SPECS:
                raise InvalidRequest(
                    f"Provider '{name}' is not configured: it runs on a machine of yours and needs no key, so "
                    f"memgate routes to it only once told where it is (MEMGATE_PROVIDER_{_env_name(name)}_BASE_URL, "
                    f"e.g. {KNOWN_SPECS[name].base_url}, or [providers.{name}] in the MEMGATE_CONFIG file).",
                    code="provider_not_configured", param="model",
                )
            if provider is None:
                known = ", ".join(sorted(self.providers))
                raise InvalidRequest(
                    f"Unknown provider '{prefix}' in model '{model}'. Use 'provider/model' with one of: {known}; "
                    "or declare a custom provider ([providers.<name>] in the MEMGATE_CONFIG file, or "
                    "MEMGATE_PROVIDER_<NAME>_BASE_URL).",
                    code="unknown_provider", param="model",
                )
            return provider, Route(name, rest)
        provider = self.providers.get(self.default_provider)
        if provider is None:
            raise InvalidRequest(f"Model '{model}' has no provider prefix and no default provider is configured.",
                                 code="unknown_provider", param="model")
        return provider, Route(self.default_provider, model)

    def chain(self, model: str) -> list[tuple[Provider, Route]]:
        """The routes to try in order: the primary, then its configured fallbacks (no repeats).

        Fallbacks are looked up by the name the client sent (an alias), else by the primary route.
        """
        primary = self.route(model)
        fallbacks = self._fallbacks_by_alias.get(model)
        if fallbacks is None:
            fallbacks = self._fallbacks_by_route.get(primary[1], [])
        chain = [primary]
        for candidate in fallbacks:
            if all(candidate[1] != seen for _, seen in chain):
                chain.append(candidate)
        return chain

    def is_configured(self, model: str, api_keys: Mapping[str, str | None] = NO_KEYS) -> bool:
        """Whether some route of the model can be used (`usable`)."""
        try:
            return any(usable(provider, route, api_keys) for provider, route in self.chain(model))
        except InvalidRequest:
            return False

    def list_models(self) -> list[dict[str, Any]]:
        """OpenAI model objects: the known models of every usable provider, then the aliases."""
        data = [
            {"id": f"{name}/{model}", "object": "model", "created": 0, "owned_by": name}
            for name, provider in sorted(self.providers.items()) if provider.spec.configured
            for model in provider.spec.models
        ]
        data += [{"id": alias, "object": "model", "created": 0, "owned_by": "memgate-alias"}
                 for alias in sorted(self.aliases)]
        return data

    def _checked(self, model: str, where: str) -> tuple[Provider, Route]:
        try:
            return self.route(model)
        except InvalidRequest as exc:
            raise ConfigError(f"{where}: {exc.message}") from None


def _env_name(name: str) -> str:
    return re.sub(r"[^A-Z0-9]", "_", name.upper())


def key_settings(name: str, spec: ProviderSpec) -> str:
    """Where provider `name`'s key is set, as an error message names it."""
    return f"{spec.key_env or 'its key'} (or MEMGATE_PROVIDER_{_env_name(name)}_API_KEY)"


def _env_overrides(env: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """MEMGATE_PROVIDER_<NAME>_BASE_URL / _API_KEY by <NAME>; an alias's (GEMINI) count for
    the canonical provider (GOOGLE), which wins when both are set."""
    found: list[tuple[bool, str, str, str]] = []
    for var, value in env.items():
        if (match := _OVERRIDE.match(var)) and value:
            raw = match.group(1)
            canonical = _env_name(canonical_name(raw))
            found.append((raw == canonical, canonical, match.group(2), value))
    overrides: dict[str, dict[str, str]] = {}
    for _, name, field, value in sorted(found, key=lambda item: item[0]):  # aliases first, canonical last
        overrides.setdefault(name, {})[field] = value
    return overrides


def _spec(
    name: str, base: ProviderSpec | None, entry: ProviderConfig, over: Mapping[str, str], env: Mapping[str, str]
) -> ProviderSpec:
    """One provider's spec. Base URL: env, file, default. Key: MEMGATE_PROVIDER_<NAME>_API_KEY,
    the key variable (the file's api_key_env, else the conventional ones), the file's api_key."""
    base = base or ProviderSpec(name, "")
    key_env: str | None
    alt_key_envs: tuple[str, ...]
    if entry.api_key_env:
        key_env, alt_key_envs = entry.api_key_env, ()
    else:
        key_env, alt_key_envs = base.key_env, base.alt_key_envs
    key = over.get("API_KEY")
    for var in (key_env, *alt_key_envs):
        key = key or (env.get(var) if var else None)
    return msgspec.structs.replace(
        base,
        base_url=over.get("BASE_URL") or entry.base_url or base.base_url,
        api_key=key or entry.api_key or None,
        key_env=key_env,
        alt_key_envs=alt_key_envs,
        models=base.models if entry.models is None else entry.models,
        headers={**base.headers, **entry.headers},
    )
