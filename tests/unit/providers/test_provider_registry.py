"""ProviderRegistry: configuration from env and routing by model prefix."""

from __future__ import annotations

import pytest

from memgate_core.errors import InvalidRequest
from memgate_providers.config import ConfigError, GatewayConfig, ProviderConfig
from memgate_providers.providers import KNOWN_SPECS
from memgate_providers.registry import ProviderRegistry, Route


def test_known_providers_are_present_with_default_urls() -> None:
    registry = ProviderRegistry.from_env({})
    keyless = {name for name, spec in KNOWN_SPECS.items() if spec.key_env is None}
    assert keyless == {"ollama", "vllm"}
    assert set(registry.providers) == set(KNOWN_SPECS) - keyless  # local servers only once configured
    assert registry.providers["openai"].spec.base_url == "https://api.openai.com/v1"
    assert registry.providers["openai"].spec.api_key is None
    assert registry.default_provider == "openai"


def test_conventional_key_variable() -> None:
    registry = ProviderRegistry.from_env({"OPENAI_API_KEY": "sk-o", "ANTHROPIC_API_KEY": "sk-a"})
    assert registry.providers["openai"].spec.api_key == "sk-o"
    assert registry.providers["anthropic"].spec.api_key == "sk-a"
    assert registry.providers["groq"].spec.api_key is None


def test_memgate_overrides_base_url_and_key() -> None:
    registry = ProviderRegistry.from_env({
        "OPENAI_API_KEY": "sk-conventional",
        "MEMGATE_PROVIDER_OPENAI_API_KEY": "sk-override",
        "MEMGATE_PROVIDER_OPENAI_BASE_URL": "http://proxy.local/v1",
    })
    spec = registry.providers["openai"].spec
    assert spec.api_key == "sk-override"
    assert spec.base_url == "http://proxy.local/v1"


def test_custom_provider_declared_by_base_url() -> None:
    registry = ProviderRegistry.from_env({
        "MEMGATE_PROVIDER_LM_STUDIO_BASE_URL": "http://127.0.0.1:1234/v1",
        "MEMGATE_PROVIDER_CORP_BASE_URL": "https://llm.corp/v1",
        "MEMGATE_PROVIDER_CORP_API_KEY": "corp-key",
    })
    lm = registry.providers["lm_studio"].spec
    assert lm.base_url == "http://127.0.0.1:1234/v1"
    assert lm.api_key is None and lm.configured  # no key needed for a custom provider
    assert registry.providers["corp"].spec.api_key == "corp-key"
    provider, route = registry.route("corp/my-model")
    assert provider.spec.name == "corp" and route == Route("corp", "my-model")


def test_key_only_unknown_provider_is_ignored() -> None:
    registry = ProviderRegistry.from_env({"MEMGATE_PROVIDER_MYSTERY_API_KEY": "k"})
    assert "mystery" not in registry.providers
    with pytest.raises(InvalidRequest):
        registry.route("mystery/x")


def test_non_matching_variables_are_ignored() -> None:
    registry = ProviderRegistry.from_env({"MEMGATE_PROVIDER_FOO_TIMEOUT": "3", "memgate_provider_bar_base_url": "x"})
    assert "foo" not in registry.providers and "bar" not in registry.providers


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"GEMINI_API_KEY": "g1"}, "g1"),
        ({"GOOGLE_API_KEY": "g2"}, "g2"),
        ({"GEMINI_API_KEY": "g1", "GOOGLE_API_KEY": "g2"}, "g1"),
        ({"MEMGATE_PROVIDER_GEMINI_API_KEY": "g3", "GEMINI_API_KEY": "g1"}, "g3"),
        ({"MEMGATE_PROVIDER_GOOGLE_API_KEY": "g4", "GOOGLE_API_KEY": "g2"}, "g4"),
    ],
)
def test_google_keys(env: dict[str, str], key: str) -> None:
    registry = ProviderRegistry.from_env(env)
    assert registry.providers["google"].spec.api_key == key
    assert "gemini" not in registry.providers


def test_alias_override_of_base_url_reaches_the_canonical_provider() -> None:
    registry = ProviderRegistry.from_env({"MEMGATE_PROVIDER_CLAUDE_BASE_URL": "http://a.local/v1"})
    assert registry.providers["anthropic"].spec.base_url == "http://a.local/v1"
    assert "claude" not in registry.providers


@pytest.mark.parametrize(
    ("model", "route"),
    [
        ("openai/gpt-4o-mini", Route("openai", "gpt-4o-mini")),
        ("gemini/gemini-2.5-flash", Route("google", "gemini-2.5-flash")),
        ("Google/gemini-2.5-pro", Route("google", "gemini-2.5-pro")),
        ("claude/claude-sonnet-4-5", Route("anthropic", "claude-sonnet-4-5")),
        ("openrouter/meta-llama/llama-3-70b", Route("openrouter", "meta-llama/llama-3-70b")),
        ("gpt-4o", Route("openai", "gpt-4o")),
    ],
)
def test_route_strips_the_prefix(model: str, route: Route) -> None:
    provider, got = ProviderRegistry.from_env({}).route(model)
    assert got == route
    assert provider.spec.name == route.provider


def test_unknown_prefix_is_an_invalid_request() -> None:
    with pytest.raises(InvalidRequest) as info:
        ProviderRegistry.from_env({}).route("nope/model-x")
    err = info.value
    assert err.status == 400
    assert err.code == "unknown_provider"
    assert err.param == "model"
    assert "nope" in err.message and "openai" in err.message


def test_unprefixed_model_goes_to_the_default_provider() -> None:
    registry = ProviderRegistry.from_env({"MEMGATE_DEFAULT_PROVIDER": "groq"})
    provider, route = registry.route("llama-3.1-8b-instant")
    assert provider.spec.name == "groq"
    assert route == Route("groq", "llama-3.1-8b-instant")


def test_a_default_provider_that_does_not_exist_is_refused_at_start() -> None:
    """(It was accepted, and every model name without a prefix was then a 400.)"""
    with pytest.raises(ConfigError, match="MEMGATE_DEFAULT_PROVIDER names no configured provider: 'nowhere'"):
        ProviderRegistry.from_env({"MEMGATE_DEFAULT_PROVIDER": "nowhere"})
    with pytest.raises(ConfigError, match="needs MEMGATE_PROVIDER_OLLAMA_BASE_URL"):
        ProviderRegistry.from_env({"MEMGATE_DEFAULT_PROVIDER": "ollama"})
    assert ProviderRegistry.from_env({"MEMGATE_DEFAULT_PROVIDER": ""}).default_provider == "openai"  # (empty: unset)


@pytest.mark.parametrize("name", ["CORP", "OPENAI", "OLLAMA"])  # a custom provider, a known one, a keyless one
@pytest.mark.parametrize("url", ["llm.corp.example/v1", "ftp://llm.corp.example"])
def test_a_base_url_from_the_environment_must_be_http(name: str, url: str) -> None:
    with pytest.raises(ConfigError, match=f"MEMGATE_PROVIDER_{name}_BASE_URL must start with http:// or https://"):
        ProviderRegistry.from_env({f"MEMGATE_PROVIDER_{name}_BASE_URL": url})


def test_default_provider_accepts_an_alias() -> None:
    registry = ProviderRegistry.from_env({"MEMGATE_DEFAULT_PROVIDER": "gemini", "GEMINI_API_KEY": "k"})
    assert registry.route("gemini-2.5-flash")[1] == Route("google", "gemini-2.5-flash")


def test_is_configured() -> None:
    registry = ProviderRegistry.from_env({"OPENAI_API_KEY": "sk"})
    assert registry.is_configured("openai/gpt-4o")
    assert registry.is_configured("gpt-4o")  # default provider openai
    assert not registry.is_configured("anthropic/claude-sonnet-4-5")  # key missing
    assert not registry.is_configured("ollama/llama3")  # local: not until configured
    local = ProviderRegistry.from_env({"MEMGATE_PROVIDER_OLLAMA_BASE_URL": "http://127.0.0.1:11434/v1"})
    assert local.is_configured("ollama/llama3")  # and then it needs no key
    assert not registry.is_configured("unknown/x")


def test_a_local_keyless_provider_is_refused_until_configured() -> None:
    with pytest.raises(InvalidRequest) as info:
        ProviderRegistry.from_env({}).route("ollama/llama3")
    assert (info.value.code, info.value.param) == ("provider_not_configured", "model")
    assert "MEMGATE_PROVIDER_OLLAMA_BASE_URL" in info.value.message
    from_file = ProviderRegistry.from_env({}, config=GatewayConfig(providers={"vllm": ProviderConfig()}))
    assert from_file.route("vllm/qwen")[0].spec.base_url == "http://127.0.0.1:8000/v1"
