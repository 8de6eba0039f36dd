"""The MEMGATE_CONFIG file, env precedence, aliases, fallback chains, timeouts, model lists."""

from __future__ import annotations

from pathlib import Path

import pytest

from memgate_core.errors import InvalidRequest
from memgate_providers import ProviderClient
from memgate_providers.config import ConfigError, GatewayConfig, Timeouts, load_config, parse_config
from memgate_providers.registry import ProviderRegistry, Route, key_settings

EXAMPLE = """
[providers.mycorp]            # custom or override of a known one
base_url = "https://llm.mycorp.example/v1"
api_key_env = "MYCORP_KEY"    # or api_key = "..." (discouraged)
models = ["llama-3.3-70b"]

[aliases]
fast = "google/gemini-2.5-flash"
smart = "openai/gpt-4.1"

[fallbacks]
fast = ["groq/llama-3.3-70b-versatile", "openai/gpt-4o-mini"]
"openai/gpt-4o" = ["anthropic/claude-sonnet-4-5"]

[timeouts]
connect = 5
first_byte = 120
total = 600
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "memgate.toml"
    path.write_text(text)
    return path


def registry_for(tmp_path: Path, text: str, **env: str) -> ProviderRegistry:
    return ProviderRegistry.from_env({"MEMGATE_CONFIG": str(write(tmp_path, text)), **env})


# ------------------------------------------------------------------ parsing


def test_the_documented_example_parses(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, EXAMPLE))
    mycorp = config.providers["mycorp"]
    assert mycorp.base_url == "https://llm.mycorp.example/v1"
    assert mycorp.api_key_env == "MYCORP_KEY" and mycorp.api_key is None
    assert mycorp.models == ("llama-3.3-70b",)
    assert config.aliases == {"fast": "google/gemini-2.5-flash", "smart": "openai/gpt-4.1"}
    assert config.fallbacks["openai/gpt-4o"] == ("anthropic/claude-sonnet-4-5",)
    assert (config.timeouts.connect, config.timeouts.first_byte, config.timeouts.total) == (5.0, 120.0, 600.0)
    assert config.source == str(tmp_path / "memgate.toml")


def test_empty_file_is_an_empty_config(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ""))
    assert config.providers == {} and config.aliases == {} and config.fallbacks == {}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[providers.mycorp]\nbse_url = 'https://x/v1'\n", "unknown key providers.mycorp.bse_url"),
        ("[timeouts]\nconect = 5\n", "unknown key timeouts.conect"),
        ("[server]\nport = 1\n", "unknown key server"),
        ("[timeouts]\nconnect = 'fast'\n", "timeouts.connect: Expected `float | null`, got `str`"),
        ("[timeouts]\ntotal = 0\n", "timeouts.total: Expected `float` > 0.0"),
        ("[providers.mycorp]\nmodels = 'llama'\n", "providers.mycorp.models: Expected `array | null`, got `str`"),
        ("[providers.mycorp]\nheaders = {a = 1}\n", "providers.mycorp.headers.a"),
        ("[aliases]\nfast = 3\n", "aliases.fast: Expected `str`, got `int`"),
        ("[fallbacks]\n'openai/gpt-4o' = ['a', 3]\n", 'fallbacks."openai/gpt-4o"[1]: Expected `str`, got `int`'),
        ("[fallbacks]\nfast = 'openai/gpt-4o'\n", "fallbacks.fast: Expected `array`, got `str`"),
        ("providers = 3\n", "providers must be a table"),
        ("[providers.x]\napi_key = 'a'\napi_key_env = 'B'\nbase_url = 'http://h'\n", "not both"),
        ("[providers.x]\nbase_url = 'h/v1'\n", "providers.x.base_url must start with http:// or https://"),
        ("[timeouts]\ntotal = inf\n", "timeouts.total: Expected `float` <= 1000000000.0"),  # (was a 500 per request)
        ("[providers.mycorp]\nheaders = {team = \"\u56e2\u961f\"}\n", "providers.mycorp.headers.team cannot be sent"),
        ("[providers.mycorp]\nheaders = {team = \"a\\nb\"}\n", "providers.mycorp.headers.team cannot be sent"),
        ("a = \n", "invalid TOML"),
    ],
)
def test_invalid_files_name_the_file_and_the_key(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert expected in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the config file"):
        ProviderRegistry.from_env({"MEMGATE_CONFIG": str(tmp_path / "nope.toml")})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[providers.mycorp]\napi_key_env = 'K'\n", "providers.mycorp.base_url is required for a custom provider"),
        ("[providers.'my/corp']\nbase_url = 'http://h/v1'\n", "cannot contain '/'"),
        ("[providers.gemini]\nmodels = []\n[providers.google]\nmodels = []\n", "are the same provider (google)"),
        ("[aliases]\nfast = 'nowhere/model'\n", "aliases.fast: Unknown provider 'nowhere'"),
        ("[aliases]\nfast = 'smart'\nsmart = 'openai/gpt-4o'\n", "aliases.fast: 'smart' is itself an alias"),
        ("[fallbacks]\n'openai/gpt-4o' = ['groq/x', 'nope/y']\n", 'fallbacks."openai/gpt-4o"[1]: Unknown provider'),
        ("[fallbacks]\n'nope/y' = ['openai/gpt-4o']\n", 'fallbacks."nope/y": Unknown provider'),
    ],
)
def test_routing_errors_name_the_file_and_the_key(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        registry_for(tmp_path, text)
    assert str(info.value).startswith(str(tmp_path / "memgate.toml"))
    assert expected in str(info.value)


# ------------------------------------------------------------------ providers from the file and env


def test_custom_provider_from_the_file(tmp_path: Path) -> None:
    registry = registry_for(tmp_path, EXAMPLE, MYCORP_KEY="corp-key")
    spec = registry.providers["mycorp"].spec
    assert spec.base_url == "https://llm.mycorp.example/v1"
    assert spec.api_key == "corp-key" and spec.key_env == "MYCORP_KEY" and spec.configured
    assert spec.models == ("llama-3.3-70b",)
    assert registry.route("mycorp/llama-3.3-70b")[1] == Route("mycorp", "llama-3.3-70b")


def test_custom_provider_whose_key_variable_is_unset_is_not_configured(tmp_path: Path) -> None:
    spec = registry_for(tmp_path, EXAMPLE).providers["mycorp"].spec
    assert spec.api_key is None and not spec.configured
    # An error names variables that can be set: a provider "my-corp" reads MEMGATE_PROVIDER_MY_CORP_*.
    assert key_settings("my-corp", spec) == "MYCORP_KEY (or MEMGATE_PROVIDER_MY_CORP_API_KEY)"


def test_keyless_custom_provider_and_literal_key(tmp_path: Path) -> None:
    registry = registry_for(tmp_path, """
[providers.lm-studio]
base_url = "http://127.0.0.1:1234/v1"
[providers.corp]
base_url = "https://corp.example/v1"
api_key = "literal"
headers = {"X-Team" = "ml"}
""")
    lm = registry.providers["lm-studio"].spec
    assert lm.api_key is None and lm.configured
    corp = registry.providers["corp"].spec
    assert corp.api_key == "literal" and corp.headers == {"X-Team": "ml"}


def test_env_wins_over_the_file_for_base_url_and_key(tmp_path: Path) -> None:
    text = """
[providers.openai]
base_url = "https://file.example/v1"
api_key = "from-file"
[providers.lm-studio]
base_url = "http://file.example/v1"
"""
    registry = registry_for(tmp_path, text)
    assert registry.providers["openai"].spec.base_url == "https://file.example/v1"
    assert registry.providers["openai"].spec.api_key == "from-file"

    registry = registry_for(tmp_path, text, OPENAI_API_KEY="conventional")
    assert registry.providers["openai"].spec.api_key == "conventional"

    registry = registry_for(
        tmp_path, text, OPENAI_API_KEY="conventional", MEMGATE_PROVIDER_OPENAI_API_KEY="override",
        MEMGATE_PROVIDER_OPENAI_BASE_URL="http://env.example/v1",
        MEMGATE_PROVIDER_LM_STUDIO_BASE_URL="http://env-lm.example/v1",
    )
    assert registry.providers["openai"].spec.api_key == "override"
    assert registry.providers["openai"].spec.base_url == "http://env.example/v1"
    assert registry.providers["lm-studio"].spec.base_url == "http://env-lm.example/v1"
    assert "lm_studio" not in registry.providers


def test_override_of_a_known_provider_keeps_what_the_file_does_not_say(tmp_path: Path) -> None:
    registry = registry_for(tmp_path, "[providers.gemini]\nmodels = ['gemini-exp']\n", GOOGLE_API_KEY="g")
    spec = registry.providers["google"].spec
    assert spec.models == ("gemini-exp",)
    assert spec.base_url == "https://generativelanguage.googleapis.com/v1beta/openai"
    assert spec.api_key == "g" and spec.key_env == "GEMINI_API_KEY"


def test_file_api_key_env_replaces_the_conventional_variable(tmp_path: Path) -> None:
    registry = registry_for(tmp_path, "[providers.openai]\napi_key_env = 'TEAM_OPENAI'\n",
                            OPENAI_API_KEY="ignored", TEAM_OPENAI="team")
    spec = registry.providers["openai"].spec
    assert spec.api_key == "team" and spec.key_env == "TEAM_OPENAI"


# ------------------------------------------------------------------ aliases and chains


def test_aliases_route_and_chain(tmp_path: Path) -> None:
    registry = registry_for(tmp_path, EXAMPLE)
    assert registry.resolve("fast") == "google/gemini-2.5-flash"
    assert registry.resolve("openai/gpt-4o") == "openai/gpt-4o"
    assert registry.route("fast")[1] == Route("google", "gemini-2.5-flash")
    assert [r for _, r in registry.chain("fast")] == [
        Route("google", "gemini-2.5-flash"), Route("groq", "llama-3.3-70b-versatile"), Route("openai", "gpt-4o-mini"),
    ]
    # Fallbacks keyed by a model apply however the client spells it.
    for name in ("openai/gpt-4o", "OpenAI/gpt-4o", "gpt-4o"):
        assert [r for _, r in registry.chain(name)] == [Route("openai", "gpt-4o"),
                                                         Route("anthropic", "claude-sonnet-4-5")]
    assert [r for _, r in registry.chain("smart")] == [Route("openai", "gpt-4.1")]
    assert [r for _, r in registry.chain("groq/x")] == [Route("groq", "x")]


def test_alias_without_own_fallbacks_uses_its_targets_and_repeats_are_dropped() -> None:
    registry = ProviderRegistry.from_env({}, config=parse_config({
        "aliases": {"main": "openai/gpt-4o", "backup": "groq/llama"},
        "fallbacks": {
            "openai/gpt-4o": ["backup", "openai/gpt-4o", "gemini/gemini-2.5-flash", "google/gemini-2.5-flash"],
        },
    }))
    assert [r.name for _, r in registry.chain("main")] == ["openai/gpt-4o", "groq/llama", "google/gemini-2.5-flash"]


def test_unknown_model_in_chain_is_an_invalid_request(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest):
        registry_for(tmp_path, EXAMPLE).chain("nope/x")


def test_is_configured_looks_at_the_whole_chain(tmp_path: Path) -> None:
    registry = registry_for(tmp_path, EXAMPLE, GROQ_API_KEY="g")
    assert registry.is_configured("fast")  # google has no key, groq has one
    assert not registry.is_configured("smart")
    assert not registry.is_configured("openai/gpt-4o")
    assert not registry.is_configured("nope/x")


def test_list_models(tmp_path: Path) -> None:
    registry = registry_for(tmp_path, EXAMPLE, OPENAI_API_KEY="o", MYCORP_KEY="m")
    ids = [m["id"] for m in registry.list_models()]
    assert "openai/gpt-4o-mini" in ids and "mycorp/llama-3.3-70b" in ids
    assert not any(i.startswith(("anthropic/", "google/")) for i in ids)  # no key: not listed
    assert ids[-2:] == ["fast", "smart"]
    alias = registry.list_models()[-2]
    assert alias == {"id": "fast", "object": "model", "created": 0, "owned_by": "memgate-alias"}
    assert {"id": "openai/gpt-4o", "object": "model", "created": 0, "owned_by": "openai"} in registry.list_models()


# ------------------------------------------------------------------ timeouts


def test_timeouts_defaults_file_then_env(tmp_path: Path) -> None:
    assert Timeouts.from_env({}) == Timeouts(5.0, 120.0, 600.0)
    config = parse_config({"timeouts": {"connect": 2, "total": 30}})
    assert Timeouts.from_env({}, config) == Timeouts(2.0, 120.0, 30.0)
    env = {"MEMGATE_TIMEOUT_CONNECT": "0.5", "MEMGATE_TIMEOUT_FIRST_BYTE": "7.5", "MEMGATE_TIMEOUT_TOTAL": ""}
    assert Timeouts.from_env(env, config) == Timeouts(0.5, 7.5, 30.0)


@pytest.mark.parametrize("raw", ["abc", "0", "-1", "nan", "inf"])
def test_bad_timeout_variable(raw: str) -> None:
    with pytest.raises(ConfigError, match=r"MEMGATE_TIMEOUT_TOTAL must be a number of seconds > 0"):
        Timeouts.from_env({"MEMGATE_TIMEOUT_TOTAL": raw})


async def test_client_from_env_loads_the_file_and_sets_http_timeouts(tmp_path: Path) -> None:
    path = write(tmp_path, EXAMPLE.replace("connect = 5", "connect = 3"))
    client = ProviderClient.from_env({"MEMGATE_CONFIG": str(path), "MEMGATE_TIMEOUT_FIRST_BYTE": "9"})
    try:
        assert client.timeouts == Timeouts(3.0, 9.0, 600.0)
        assert client.http.connect_timeout == 3.0 and client.http.read_timeout == 9.0
        assert client.registry.route("fast")[1] == Route("google", "gemini-2.5-flash")
    finally:
        await client.close()


def test_no_config_variable_means_no_file() -> None:
    registry = ProviderRegistry.from_env({})
    assert registry.aliases == {} and registry.chain("openai/gpt-4o")[1:] == []
    assert ProviderRegistry.from_env({"MEMGATE_CONFIG": "/nonexistent"}, config=GatewayConfig()).aliases == {}
