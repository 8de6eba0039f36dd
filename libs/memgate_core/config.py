"""Configuration from the environment (the public contract in DESIGN.md).

One immutable `Settings` per process; every service receives it, nothing reads
`os.environ` elsewhere (provider settings are read by `memgate_providers.registry`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import msgspec


class Settings(msgspec.Struct, frozen=True):
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    data_dir: Path = Path(".memgate")
    database_url: str | None = None  # unset: embedded Postgres under data_dir
    nats_url: str | None = None  # unset: embedded nats-server under data_dir
    qdrant_url: str | None = None  # unset: Qdrant Edge in-process under data_dir
    qdrant_api_key: str | None = None
    bootstrap_key: str | None = None
    admin_key: str | None = None  # an operator key (manages every tenant's keys) once ready
    auth_cache_seconds: float = 30.0  # a revoked key stops working within this time
    default_rpm: int | None = None  # requests per minute for keys without their own limit
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
    health_port: int = 8081  # split services (observer, context) expose /healthz here
    traces_file: Path | None = None  # JSON-lines span export, used by tests and debugging
    log_level: str = "INFO"

    @property
    def embedded(self) -> bool:
        return self.database_url is None or self.nats_url is None


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"memgate: {name} must be an integer, got {raw!r}") from None


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SystemExit(f"memgate: {name} must be a number, got {raw!r}") from None
    if value < 0:
        raise SystemExit(f"memgate: {name} must not be negative, got {raw!r}")
    return value


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env

    def opt(name: str) -> str | None:
        return env.get(name) or None

    traces = opt("MEMGATE_TRACES_FILE")
    return Settings(
        http_host=env.get("MEMGATE_HTTP_HOST", "127.0.0.1"),
        http_port=_int(env, "MEMGATE_HTTP_PORT", 8080),
        data_dir=Path(env.get("MEMGATE_DATA_DIR", ".memgate")).resolve(),
        database_url=opt("MEMGATE_DATABASE_URL"),
        nats_url=opt("MEMGATE_NATS_URL"),
        qdrant_url=opt("MEMGATE_QDRANT_URL"),
        qdrant_api_key=opt("MEMGATE_QDRANT_API_KEY"),
        bootstrap_key=opt("MEMGATE_BOOTSTRAP_KEY"),
        admin_key=opt("MEMGATE_ADMIN_KEY"),
        auth_cache_seconds=_number(env, "MEMGATE_AUTH_CACHE_SECONDS", 30.0),
        default_rpm=_int(env, "MEMGATE_DEFAULT_RPM", 0) or None,
        nats_port=_int(env, "MEMGATE_NATS_PORT", 0) or None,
        observer_model=env.get("MEMGATE_OBSERVER_MODEL", "google/gemini-2.5-flash"),
        reflector_model=opt("MEMGATE_REFLECTOR_MODEL"),
        embedding_model=env.get("MEMGATE_EMBEDDING_MODEL") or "local",
        context_budget_tokens=_int(env, "MEMGATE_CONTEXT_BUDGET_TOKENS", 4000),
        related_budget_tokens=_int(env, "MEMGATE_RELATED_BUDGET_TOKENS", 0) if env.get("MEMGATE_RELATED_BUDGET_TOKENS") else None,
        context_timeout_ms=_int(env, "MEMGATE_CONTEXT_TIMEOUT_MS", 300),
        activation_tokens=_int(env, "MEMGATE_ACTIVATION_TOKENS", 30_000),
        keep_raw_tokens=_int(env, "MEMGATE_KEEP_RAW_TOKENS", 4_000),
        observation_budget_tokens=_int(env, "MEMGATE_OBSERVATION_BUDGET_TOKENS", 40_000),
        observer_debounce_ms=_int(env, "MEMGATE_OBSERVER_DEBOUNCE_MS", 500),
        observer_max_batch=max(1, _int(env, "MEMGATE_OBSERVER_MAX_BATCH", 32)),
        observer_concurrency=max(1, _int(env, "MEMGATE_OBSERVER_CONCURRENCY", 8)),
        max_body_bytes=_int(env, "MEMGATE_MAX_BODY_BYTES", 4 * 1024 * 1024),
        health_port=_int(env, "MEMGATE_HEALTH_PORT", 8081),
        traces_file=Path(traces) if traces else None,
        log_level=env.get("MEMGATE_LOG_LEVEL", "INFO").upper(),
    )
