"""Every provider module loads, is registered and routes; provider-specific behaviour."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import memgate_providers.providers as providers_pkg
from memgate_providers.base import ProviderSpec
from memgate_providers.openai_compatible import OpenAICompatibleProvider
from memgate_providers.providers import KNOWN_SPECS, MODULES, PROVIDER_ALIASES
from memgate_providers.providers.anthropic import AnthropicProvider
from memgate_providers.providers.google import GoogleProvider
from memgate_providers.registry import ProviderRegistry, Route

EXPECTED = {
    "openai": ("https://api.openai.com/v1", "OPENAI_API_KEY"),
    "google": ("https://generativelanguage.googleapis.com/v1beta/openai", "GEMINI_API_KEY"),
    "anthropic": ("https://api.anthropic.com/v1", "ANTHROPIC_API_KEY"),
    "openrouter": ("https://openrouter.ai/api/v1", "OPENROUTER_API_KEY"),
    "groq": ("https://api.groq.com/openai/v1", "GROQ_API_KEY"),
    "mistral": ("https://api.mistral.ai/v1", "MISTRAL_API_KEY"),
    "deepseek": ("https://api.deepseek.com/v1", "DEEPSEEK_API_KEY"),
    "xai": ("https://api.x.ai/v1", "XAI_API_KEY"),
    "together": ("https://api.together.xyz/v1", "TOGETHER_API_KEY"),
    "fireworks": ("https://api.fireworks.ai/inference/v1", "FIREWORKS_API_KEY"),
    "ollama": ("http://127.0.0.1:11434/v1", None),
    "vllm": ("http://127.0.0.1:8000/v1", None),
}


def test_every_module_in_the_package_is_registered() -> None:
    names = {m.name for m in pkgutil.iter_modules(providers_pkg.__path__)}
    assert names == {m.__name__.rsplit(".", 1)[1] for m in MODULES}
    for name in names:
        module = importlib.import_module(f"memgate_providers.providers.{name}")
        assert isinstance(module.SPEC, ProviderSpec)
        assert module.SPEC.name == name
        assert module.__doc__


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_module_spec_and_route(name: str) -> None:
    base_url, key_env = EXPECTED[name]
    spec = KNOWN_SPECS[name]
    assert (spec.base_url, spec.key_env) == (base_url, key_env)
    # A keyless local server is routed to once configured (its default URL said out loud).
    registry = ProviderRegistry.from_env({} if key_env else {f"MEMGATE_PROVIDER_{name.upper()}_BASE_URL": base_url})
    provider, route = registry.route(f"{name}/some-model")
    assert route == Route(name, "some-model") and route.name == f"{name}/some-model"
    assert provider.spec.name == name and provider.spec.base_url == base_url
    assert isinstance(provider, OpenAICompatibleProvider)
    assert provider.spec.configured is (key_env is None)
    for model in spec.models:
        assert registry.route(f"{name}/{model}")[1] == Route(name, model)


def test_every_provider_builds_a_chat_request() -> None:
    registry = ProviderRegistry.from_env({spec.key_env: "k" for spec in KNOWN_SPECS.values() if spec.key_env})
    for name, provider in registry.providers.items():
        request = provider.build_request(b"{}", api_key=None)
        assert str(request.url) == EXPECTED[name][0] + "/chat/completions"
        assert (request.headers.get("authorization") == "Bearer k") is (EXPECTED[name][1] is not None)


def test_provider_aliases() -> None:
    assert PROVIDER_ALIASES == {"gemini": "google", "claude": "anthropic"}
    registry = ProviderRegistry.from_env({})
    assert registry.route("gemini/gemini-2.5-flash")[1] == Route("google", "gemini-2.5-flash")
    assert registry.route("Claude/claude-sonnet-4-5")[1] == Route("anthropic", "claude-sonnet-4-5")


def test_special_classes() -> None:
    registry = ProviderRegistry.from_env({})
    assert isinstance(registry.providers["google"], GoogleProvider)
    assert isinstance(registry.providers["anthropic"], AnthropicProvider)


def test_google_model_ids_lose_their_models_prefix() -> None:
    provider = GoogleProvider(KNOWN_SPECS["google"])
    data = {"object": "list", "data": [{"id": "models/gemini-2.5-flash"}, {"id": "gemini-2.5-pro"}, {"x": 1}]}
    assert provider.model_ids(data) == ["gemini-2.5-flash", "gemini-2.5-pro"]
    assert provider.model_ids({"data": "nope"}) == [] and provider.model_ids([]) == []


def test_anthropic_lists_models_with_its_own_headers() -> None:
    provider = ProviderRegistry.from_env({"ANTHROPIC_API_KEY": "sk-ant"}).providers["anthropic"]
    request = provider.models_request(api_key=None)
    assert str(request.url) == "https://api.anthropic.com/v1/models"
    assert request.headers["x-api-key"] == "sk-ant"
    assert "authorization" not in request.headers  # Anthropic's own API takes x-api-key only
    assert request.headers["anthropic-version"] == "2023-06-01"


def test_anthropic_takes_messages_natively_and_the_others_do_not() -> None:
    registry = ProviderRegistry.from_env({"ANTHROPIC_API_KEY": "sk-ant", "OPENAI_API_KEY": "sk-oa"})
    request = registry.providers["anthropic"].messages_request(b'{"model": "m"}', api_key="sk-caller")
    assert request is not None
    assert (request.method, str(request.url)) == ("POST", "https://api.anthropic.com/v1/messages")
    assert request.headers["x-api-key"] == "sk-caller"  # the caller's own key wins over memgate's
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert request.headers["content-type"] == "application/json" and request.content == b'{"model": "m"}'
    assert registry.providers["openai"].messages_request(b"{}", api_key=None) is None


def test_openrouter_attribution_is_opt_in() -> None:
    plain = ProviderRegistry.from_env({}).providers["openrouter"].build_request(b"{}", api_key="k")
    assert "http-referer" not in plain.headers and "x-title" not in plain.headers
    env = {"OPENROUTER_SITE_URL": "https://app.example", "OPENROUTER_APP_TITLE": "My app"}
    request = ProviderRegistry.from_env(env).providers["openrouter"].build_request(b"{}", api_key="k")
    assert request.headers["http-referer"] == "https://app.example"
    assert request.headers["x-openrouter-title"] == "My app" and request.headers["x-title"] == "My app"


def test_spec_headers_are_sent_and_cannot_duplicate_authorization() -> None:
    spec = ProviderSpec("x", "http://h/v1", api_key="sk", headers={"X-Workspace": "w1", "Authorization": "nope"})
    request = OpenAICompatibleProvider(spec).build_request(b"{}", api_key=None)
    assert request.headers["x-workspace"] == "w1"
    assert [(k, v) for k, v in request.headers.items() if k.lower() == "authorization"] == [("authorization", "Bearer sk")]
    models = OpenAICompatibleProvider(spec).models_request(api_key=None)
    assert models.method == "GET" and str(models.url) == "http://h/v1/models"
    assert models.headers["x-workspace"] == "w1"
