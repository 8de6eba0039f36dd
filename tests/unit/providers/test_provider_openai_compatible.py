"""The OpenAI-compatible provider builds the upstream request."""

from __future__ import annotations

import pytest

from memgate_providers.base import ProviderSpec
from memgate_providers.openai_compatible import OpenAICompatibleProvider

BODY = b'{"model":"gpt-4o","messages":[]}'


@pytest.mark.parametrize("base", ["https://api.example.com/v1", "https://api.example.com/v1/"])
def test_url_and_body(base: str) -> None:
    request = OpenAICompatibleProvider(ProviderSpec("x", base)).build_request(BODY, api_key=None)
    assert request.method == "POST"
    assert str(request.url) == "https://api.example.com/v1/chat/completions"
    assert request.content == BODY
    assert request.headers["content-type"] == "application/json"


def test_no_key_means_no_authorization() -> None:
    request = OpenAICompatibleProvider(ProviderSpec("x", "http://h/v1")).build_request(BODY, api_key=None)
    assert "authorization" not in request.headers


def test_spec_key_is_used() -> None:
    provider = OpenAICompatibleProvider(ProviderSpec("x", "http://h/v1", api_key="sk-spec"))
    assert provider.build_request(BODY, api_key=None).headers["authorization"] == "Bearer sk-spec"


def test_passed_key_wins_over_spec_key() -> None:
    provider = OpenAICompatibleProvider(ProviderSpec("x", "http://h/v1", api_key="sk-spec"))
    request = provider.build_request(BODY, api_key="sk-client")
    assert request.headers["authorization"] == "Bearer sk-client"
    assert [name for name in request.headers if name.lower() == "authorization"] == ["authorization"]


def test_spec_configured() -> None:
    assert not ProviderSpec("a", "u", key_env="A_KEY").configured
    assert ProviderSpec("a", "u", api_key="k", key_env="A_KEY").configured
    assert ProviderSpec("local", "u").configured
