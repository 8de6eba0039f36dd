"""Settings loaded from a dict environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from memgate_core.config import Settings, SettingsError, load_settings


def test_defaults_from_empty_env() -> None:
    s = load_settings({})
    assert s.http_host == "127.0.0.1"
    assert s.http_port == 8080
    assert s.http_keepalive_seconds == 75  # above common load balancers' 60 s idle timeout
    assert s.data_dir == Path(".memgate").resolve()
    assert s.database_url is None and s.nats_url is None and s.qdrant_url is None
    assert s.bootstrap_key is None
    assert s.observer_model == "google/gemini-2.5-flash"
    assert s.reflector_model is None
    assert s.context_budget_tokens == 4000
    assert s.context_timeout_ms == 300
    assert s.activation_tokens == 30_000
    assert s.keep_raw_tokens == 4_000
    assert s.max_body_bytes == 4 * 1024 * 1024
    assert s.health_port == 8081
    assert s.traces_file is None
    assert s.log_level == "INFO"
    assert s.embedded is True


def test_overrides(tmp_path: Path) -> None:
    env = {
        "MEMGATE_HTTP_HOST": "0.0.0.0",
        "MEMGATE_HTTP_PORT": "9999",
        "MEMGATE_DATA_DIR": str(tmp_path / "d"),
        "MEMGATE_DATABASE_URL": "postgresql://x/y",
        "MEMGATE_NATS_URL": "nats://n:4222",
        "MEMGATE_QDRANT_URL": "http://q:6333",
        "MEMGATE_BOOTSTRAP_KEY": "msk_boot",
        "MEMGATE_OBSERVER_MODEL": "local",
        "MEMGATE_CONTEXT_BUDGET_TOKENS": "123",
        "MEMGATE_MAX_BODY_BYTES": "1024",
        "MEMGATE_TRACES_FILE": str(tmp_path / "t.jsonl"),
        "MEMGATE_LOG_LEVEL": "debug",
    }
    s = load_settings(env)
    assert s.http_host == "0.0.0.0"
    assert s.http_port == 9999
    assert s.data_dir == tmp_path / "d"
    assert s.database_url == "postgresql://x/y"
    assert s.nats_url == "nats://n:4222"
    assert s.qdrant_url == "http://q:6333"
    assert s.bootstrap_key == "msk_boot"
    assert s.observer_model == "local"
    assert s.context_budget_tokens == 123
    assert s.max_body_bytes == 1024
    assert s.traces_file == tmp_path / "t.jsonl"
    assert s.log_level == "DEBUG"
    assert s.embedded is False


def test_empty_values_mean_unset() -> None:
    s = load_settings({"MEMGATE_HTTP_PORT": "", "MEMGATE_DATABASE_URL": "", "MEMGATE_TRACES_FILE": ""})
    assert s.http_port == 8080
    assert s.database_url is None
    assert s.traces_file is None


def test_embedded_when_only_one_external_service() -> None:
    assert load_settings({"MEMGATE_DATABASE_URL": "postgresql://x/y"}).embedded is True
    assert load_settings({"MEMGATE_NATS_URL": "nats://n"}).embedded is True


@pytest.mark.parametrize("name", ["MEMGATE_HTTP_PORT", "MEMGATE_CONTEXT_TIMEOUT_MS", "MEMGATE_KEEP_RAW_TOKENS"])
def test_bad_integer_is_refused_naming_the_variable(name: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings({name: "12abc"})
    assert name in str(info.value)
    assert "'12abc'" in str(info.value)


def test_settings_are_frozen() -> None:
    s = load_settings({})
    assert isinstance(s, Settings)
    with pytest.raises(AttributeError):
        s.http_port = 1  # type: ignore[misc]


def test_zero_means_unset_and_counts_stay_positive() -> None:
    s = load_settings({"MEMGATE_DEFAULT_RPM": "0", "MEMGATE_OBSERVER_MAX_BATCH": "0", "MEMGATE_LOG_LEVEL": "debug",
                       "MEMGATE_HTTP_KEEPALIVE_SECONDS": "0"})
    assert (s.default_rpm, s.observer_max_batch, s.log_level, s.http_keepalive_seconds) == (None, 1, "DEBUG", 1)
    with pytest.raises(SettingsError, match="MEMGATE_AUTH_CACHE_SECONDS"):
        load_settings({"MEMGATE_AUTH_CACHE_SECONDS": "-1"})


@pytest.mark.parametrize(("name", "value"), [
    ("MEMGATE_AUTH_CACHE_SECONDS", "inf"),  # (a revoked key would never leave another replica's cache)
    ("MEMGATE_AUTH_CACHE_SECONDS", "nan"),
    ("MEMGATE_DEFAULT_RPM", "-5"),  # (the limiter took it as no limit)
    ("MEMGATE_CONTEXT_BUDGET_TOKENS", "-1"),
    ("MEMGATE_HTTP_PORT", "70000"),
    ("MEMGATE_LOG_LEVEL", "verbose"),  # (logging.basicConfig raised a traceback at start)
])
def test_values_no_setting_can_mean_are_refused_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings({name: value})
    assert name in str(info.value) and repr(value) in str(info.value)
