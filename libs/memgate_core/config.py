"""Configuration from the environment (the public contract in DESIGN.md).

One immutable `Settings` per process; every service receives it, nothing reads
`os.environ` elsewhere (provider settings are read by `memgate_providers.registry`).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path

import msgspec

from memgate_core.encryption import MIN_SECRET_CHARS


class Settings(msgspec.Struct, frozen=True):
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    # Seconds an idle client connection stays open: longer than the idle timeouts of the proxies
    # and load balancers in front (60 s on common ones), so they close first. A server that
    # closes first races their next request on that connection: a 502 at the proxy.
    http_keepalive_seconds: int = 75
    data_dir: Path = Path(".memgate")
    database_url: str | None = None  # unset: embedded Postgres under data_dir
    nats_url: str | None = None  # unset: embedded nats-server under data_dir
    qdrant_url: str | None = None  # unset: Qdrant Edge in-process under data_dir
    qdrant_api_key: str | None = None
    bootstrap_key: str | None = None
    admin_key: str | None = None  # an operator key (manages every tenant's keys) once ready
    # Encrypts tenants' provider keys at rest (memgate_core.encryption); unset: a key file
    # generated in data_dir. Replicas without a shared data dir must share this.
    secret_key: str | None = None
    auth_cache_seconds: float = 30.0  # a revoked key stops working within this time
    # Requests per minute of each key without a limit of its own, by scope: chat (the LLM
    # proxy), memory API reads, memory API writes (0: unlimited); `rate_limits` false: none.
    rate_limits: bool = True
    default_rpm: int | None = 6000
    memory_read_rpm: int | None = 6000
    memory_write_rpm: int | None = 1200
    nats_port: int | None = None  # the embedded nats-server's port (default: a free one)
    observer_model: str = "google/gemini-2.5-flash"
    reflector_model: str | None = None
    embedding_model: str = "local"  # or provider/model: that provider's embeddings endpoint
    context_budget_tokens: int = 4000
    related_budget_tokens: int | None = None  # most of it for recall (default: what the budget leaves)
    context_timeout_ms: int = 300
    activation_tokens: int = 30_000  # unobserved message tokens that activate observations
    keep_raw_tokens: int = 4_000  # newest raw tokens kept when observations activate
    observation_budget_tokens: int = 40_000  # active observations above this are reflected
    observer_debounce_ms: int = 500  # quiet time after a thread's last exchange before observing
    observer_max_batch: int = 32  # most exchanges of one thread observed in one call
    observer_concurrency: int = 8  # threads observed at once per observer process
    max_body_bytes: int = 4 * 1024 * 1024
    # Days the request log keeps each request's injected memory block (its usage row stays);
    # 0: blocks are not kept.
    request_log_days: int = 30
    health_port: int = 8081  # split services (observer, context) expose /healthz here
    traces_file: Path | None = None  # JSON-lines span export, used by tests and debugging
    log_level: str = "INFO"

    @property
    def embedded(self) -> bool:
        return self.database_url is None or self.nats_url is None


class SettingsError(ValueError):
    """A setting in the environment has a value memgate cannot use (the message names it)."""


def env_name(field: str) -> str:
    """Each setting's variable: MEMGATE_ and its name in capitals (`http_port`: MEMGATE_HTTP_PORT)."""
    return f"MEMGATE_{field.upper()}"


def _path(kind: type, value: object) -> object:
    if kind is Path and isinstance(value, str):
        return Path(value)
    raise NotImplementedError


# Settings where 0 (or nothing) means "not set": no limit, a free port, what the budget leaves.
_ZERO_IS_UNSET = ("default_rpm", "memory_read_rpm", "memory_write_rpm", "nats_port", "related_budget_tokens")
_AT_LEAST_ONE = ("observer_max_batch", "observer_concurrency", "http_keepalive_seconds")


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Settings from MEMGATE_* variables; each default is the one written in `Settings`. An
    empty variable counts as unset."""
    env = os.environ if env is None else env
    given: dict[str, object] = {}
    for field in msgspec.structs.fields(Settings):
        raw = env.get(env_name(field.name))
        if raw:
            given[field.name] = raw
    try:  # (strings to numbers; paths by `_path`)
        settings = msgspec.convert(given, Settings, strict=False, dec_hook=_path)
    except msgspec.ValidationError as exc:
        problem, _, where = str(exc).partition(" - at `$.")
        name, wanted = where.rstrip("`"), problem.partition("`")[2].partition("`")[0]
        kind = {"int": "an integer", "float": "a number", "bool": "true or false"}.get(wanted, wanted or "valid")
        raise SettingsError(f"{env_name(name)} must be {kind}, got {given.get(name)!r}") from None
    if settings.secret_key is not None and len(settings.secret_key) < MIN_SECRET_CHARS:
        # (never the value itself in the message)
        raise SettingsError(f"MEMGATE_SECRET_KEY must be at least {MIN_SECRET_CHARS} characters long "
                            "(e.g. the output of `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)")
    for field in msgspec.structs.fields(Settings):  # (every number is a count, a size or a time)
        value = getattr(settings, field.name)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not 0 <= value < math.inf:
            raise SettingsError(f"{env_name(field.name)} must be a number from 0 up, got {given.get(field.name)!r}")
    for name in ("http_port", "health_port", "nats_port"):
        if (getattr(settings, name) or 0) > 65535:
            raise SettingsError(f"{env_name(name)} must be a port (up to 65535), got {given.get(name)!r}")
    if settings.log_level.upper() not in logging.getLevelNamesMapping():
        raise SettingsError(f"MEMGATE_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got {settings.log_level[:40]!r}")
    changes: dict[str, object] = {
        "data_dir": settings.data_dir.resolve(),
        "log_level": settings.log_level.upper(),
        **{name: getattr(settings, name) or None for name in _ZERO_IS_UNSET},
        **{name: max(1, getattr(settings, name)) for name in _AT_LEAST_ONE},
    }
    return msgspec.structs.replace(settings, **changes)
