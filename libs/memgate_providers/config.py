"""The providers part of memgate's configuration: the `MEMGATE_CONFIG` TOML file and the
`MEMGATE_TIMEOUT_*` variables.

The file is validated strictly (msgspec Structs, unknown keys are errors) and every error
names the file and the key, e.g. `memgate.toml: unknown key providers.mycorp.bse_url`.
See docs/providers.md for the format.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, TypeVar

import msgspec

T = TypeVar("T")
Seconds = Annotated[float, msgspec.Meta(gt=0, le=1e9)]  # (finite: `inf` is valid TOML)

CONFIG_ENV = "MEMGATE_CONFIG"
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")


class ConfigError(ValueError):
    """The configuration (file or env) is invalid; the message names the file or variable and key."""


class ProviderConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`[providers.<name>]`: a custom OpenAI-compatible provider, or an override of a known one."""

    base_url: str | None = None
    api_key_env: str | None = None
    api_key: str | None = None  # discouraged: prefer api_key_env
    models: tuple[str, ...] | None = None  # replaces the known provider's list
    headers: dict[str, str] = {}


class TimeoutsConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    connect: Seconds | None = None
    first_byte: Seconds | None = None
    total: Seconds | None = None


class GatewayConfig(msgspec.Struct, frozen=True, kw_only=True):
    """The whole file. `GatewayConfig()` is "no file"."""

    providers: dict[str, ProviderConfig] = {}
    aliases: dict[str, str] = {}
    fallbacks: dict[str, tuple[str, ...]] = {}
    timeouts: TimeoutsConfig = TimeoutsConfig()
    source: str = "memgate config"  # the file it came from, for error messages (not a TOML key)


_SECTIONS = ("providers", "aliases", "fallbacks", "timeouts")


def load_config(path: str | Path) -> GatewayConfig:
    """Read and validate a memgate TOML file; raises ConfigError naming the file and key."""
    source = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read the config file ({exc.strerror or exc}).") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{source}: not UTF-8 text.") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML: {exc}.") from None
    return parse_config(data, source)


def parse_config(data: Mapping[str, Any], source: str = "memgate config") -> GatewayConfig:
    """Validate an already-parsed TOML document."""
    for key in data:
        if key not in _SECTIONS:
            raise ConfigError(f"{source}: unknown key {toml_key(key)} (known: {', '.join(_SECTIONS)}).")
    providers: dict[str, ProviderConfig] = {}
    for name, entry in _table(data, "providers", source).items():
        path = f"providers.{toml_key(name)}"
        headers = entry.get("headers") if isinstance(entry, dict) else None
        for header, value in (headers or {}).items() if isinstance(headers, dict) else ():
            _convert(value, str, f"{path}.headers.{toml_key(header)}", source)  # names the header, unlike msgspec
            if not _HEADER_VALUE.fullmatch(value):  # (an HTTP header's value: Latin-1, no line breaks)
                raise ConfigError(f"{source}: {path}.headers.{toml_key(header)} cannot be sent as an HTTP header "
                                  "(line breaks, control or non-Latin-1 characters).")
        providers[name] = _convert(entry, ProviderConfig, path, source)
    aliases: dict[str, str] = {
        name: _convert(target, str, f"aliases.{toml_key(name)}", source)
        for name, target in _table(data, "aliases", source).items()
    }
    fallbacks: dict[str, tuple[str, ...]] = {
        name: _convert(chain, tuple[str, ...], f"fallbacks.{toml_key(name)}", source)
        for name, chain in _table(data, "fallbacks", source).items()
    }
    timeouts: TimeoutsConfig = _convert(data.get("timeouts", {}), TimeoutsConfig, "timeouts", source)
    for name, provider in providers.items():
        if provider.api_key is not None and provider.api_key_env is not None:
            raise ConfigError(f"{source}: providers.{toml_key(name)}: set api_key_env or api_key, not both.")
        if provider.base_url is not None and not provider.base_url.startswith(("http://", "https://")):
            raise ConfigError(f"{source}: providers.{toml_key(name)}.base_url must start with http:// or https://, "
                              f"got {provider.base_url!r}.")
    return GatewayConfig(providers=providers, aliases=aliases, fallbacks=fallbacks, timeouts=timeouts, source=source)


def config_from_env(env: Mapping[str, str]) -> GatewayConfig:
    """The file named by MEMGATE_CONFIG, or an empty configuration when it is unset."""
    path = env.get(CONFIG_ENV, "").strip()
    return load_config(path) if path else GatewayConfig()


class Timeouts(msgspec.Struct, frozen=True):
    """Seconds. `first_byte` bounds the wait for the response and then each chunk;
    `total` is the whole request's deadline (fallbacks included; the edge enforces it
    while relaying the body)."""

    connect: float = 5.0
    first_byte: float = 120.0  # reasoning models can think for a long while
    total: float = 600.0

    @classmethod
    def from_env(cls, env: Mapping[str, str], config: GatewayConfig | None = None) -> Timeouts:
        """Defaults, then the file's [timeouts], then MEMGATE_TIMEOUT_CONNECT/_FIRST_BYTE/_TOTAL."""
        values = msgspec.structs.asdict(cls())
        if config is not None:
            values.update({k: v for k, v in msgspec.structs.asdict(config.timeouts).items() if v is not None})
        for field in values:
            var = f"MEMGATE_TIMEOUT_{field.upper()}"
            raw = env.get(var, "").strip()
            if raw:
                values[field] = _seconds(var, raw)
        return cls(**values)


def _seconds(var: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{var} must be a number of seconds > 0, got {raw!r}.")
    return value


def _table(data: Mapping[str, Any], section: str, source: str) -> dict[str, Any]:
    value = data.get(section, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: {section} must be a table ([{section}]), got {type(value).__name__}.")
    return value


def _convert(value: Any, type_: type[T] | Any, path: str, source: str) -> T:
    try:
        return msgspec.convert(value, type_)
    except msgspec.ValidationError as exc:
        message, _, where = str(exc).partition(" - at `$")
        full = path + where.rstrip("`")
        if unknown := re.match(r"Object contains unknown field `(.+)`$", message):
            raise ConfigError(f"{source}: unknown key {full}.{toml_key(unknown.group(1))}.") from None
        raise ConfigError(f"{source}: {full}: {message}.") from None


def toml_key(name: str) -> str:
    """A TOML key as the user would write it: bare when possible, else quoted."""
    return name if _BARE_KEY.match(name) else msgspec.json.encode(name).decode()
