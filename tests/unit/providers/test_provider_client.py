"""ProviderClient error mapping, against a real local HTTP server (the fake provider)."""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator, Iterator

import msgspec
import pytest

from memgate_core.errors import GatewayError, UpstreamError, UpstreamTimeout
from memgate_providers.base import ProviderSpec
from memgate_providers.client import ProviderClient, Timeouts, UpstreamAuthError, UpstreamStatusError, _error_of
from memgate_providers.openai_compatible import OpenAICompatibleProvider
from memgate_providers.registry import ProviderRegistry
from memgate_testing.fake_provider import FakeProvider

BODY = msgspec.json.encode({"model": "fake-model", "messages": [{"role": "user", "content": "hello"}]})


# ------------------------------------------------------------------ _error_of


def test_error_of_openai_shape() -> None:
    raw = b'{"error": {"message": "bad key", "type": "authentication_error", "code": "invalid_api_key"}}'
    assert _error_of(raw) == {"message": "bad key", "type": "authentication_error", "code": "invalid_api_key"}


def test_error_of_string_error() -> None:
    assert _error_of(b'{"error": "overloaded"}') == {"message": "overloaded"}


def test_error_of_non_json_keeps_the_first_200_bytes() -> None:
    assert _error_of(b"  <html>Bad Gateway</html>\n") == {"message": "<html>Bad Gateway</html>"}
    assert len(_error_of(b"x" * 1000)["message"]) == 200
    assert _error_of(b"") == {"message": None}


@pytest.mark.parametrize("raw", [b"[1, 2]", b'{"detail": "nope"}', b'{"error": 5}', b"42"])
def test_error_of_other_json_is_empty(raw: bytes) -> None:
    assert _error_of(raw) == {}


# ------------------------------------------------------------------ UpstreamStatusError


def test_5xx_becomes_502_keeping_provider_type_and_message() -> None:
    err = UpstreamStatusError(503, {"message": "overloaded", "type": "server_error", "code": "busy"}, "openai")
    assert isinstance(err, GatewayError)
    assert err.status == 502
    assert err.type == "server_error"
    assert err.code == "busy"
    assert "openai" in err.message and "overloaded" in err.message


def test_5xx_without_body_gets_fallbacks() -> None:
    err = UpstreamStatusError(500, {}, "groq")
    assert err.status == 502
    assert err.type == "upstream_error"
    assert err.code is None
    assert "HTTP 500" in err.message and "groq" in err.message


@pytest.mark.parametrize("status", [400, 401, 404, 422, 429])
def test_4xx_status_is_kept(status: int) -> None:
    err = UpstreamStatusError(status, {"message": "m"}, "openai")
    assert err.status == status
    assert err.type == ("rate_limit_error" if status == 429 else "invalid_request_error")


def test_numeric_code_becomes_a_string() -> None:
    err = UpstreamStatusError(429, {"message": "slow", "type": "rate_limit_error", "code": 429}, "google")
    assert err.code == "429"
    body = msgspec.json.decode(err.to_json())["error"]
    assert body["type"] == "rate_limit_error" and body["code"] == "429"


# ------------------------------------------------------------------ against the fake provider


@pytest.fixture
def fake(provider: FakeProvider) -> Iterator[FakeProvider]:
    yield provider
    provider.reset()


def _provider(base_url: str, key: str | None = "sk-test") -> OpenAICompatibleProvider:
    return OpenAICompatibleProvider(ProviderSpec("fake", base_url, api_key=key))


@pytest.fixture
async def client() -> AsyncIterator[ProviderClient]:
    c = ProviderClient(ProviderRegistry({}), timeouts=Timeouts(connect=1.0, first_byte=1.0))
    yield c
    await c.close()


async def test_success_returns_the_open_response(fake: FakeProvider, client: ProviderClient) -> None:
    response = await client.open(_provider(fake.base_url), BODY, api_key=None)
    try:
        assert response.status_code == 200
        data = msgspec.json.decode(await response.aread())
    finally:
        await response.aclose()
    assert data["choices"][0]["message"]["content"] == "fake answer to: hello"
    assert fake.requests[-1]["api_key"] == "sk-test"


async def test_passed_key_reaches_the_provider(fake: FakeProvider, client: ProviderClient) -> None:
    response = await client.open(_provider(fake.base_url), BODY, api_key="sk-byok")
    await response.aclose()
    assert fake.requests[-1]["api_key"] == "sk-byok"


async def test_provider_5xx_maps_to_502(fake: FakeProvider, client: ProviderClient) -> None:
    fake.set_behavior(fail_status=503)
    with pytest.raises(UpstreamStatusError) as info:
        await client.open(_provider(fake.base_url), BODY, api_key=None)
    err = info.value
    assert err.status == 502
    assert err.type == "server_error"
    assert err.code == "fake_failure"
    assert "status 503" in err.message


async def test_provider_rejecting_memgates_own_key_is_a_502(fake: FakeProvider, client: ProviderClient) -> None:
    # Not the caller's fault: their memgate key was fine, the gateway's provider key is not.
    with pytest.raises(UpstreamAuthError) as info:
        await client.open(_provider(fake.base_url, key=None), BODY, api_key=None)
    assert info.value.status == 502 and info.value.code == "upstream_auth_failed"
    assert "API key" in info.value.message


async def test_provider_4xx_is_passed_on(client: ProviderClient) -> None:
    with FakeProvider(expected_key="the-right-key") as strict, pytest.raises(UpstreamStatusError) as info:
        await client.open(_provider(strict.base_url, key=None), BODY, api_key="a-callers-wrong-key")
    err = info.value
    assert err.status == 401
    assert err.type == "authentication_error"
    assert err.code == "invalid_api_key"
    assert "API key" in err.message


async def test_closed_port_is_502_unreachable(client: ProviderClient) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(UpstreamError) as info:
        await client.open(_provider(f"http://127.0.0.1:{port}/v1"), BODY, api_key=None)
    err = info.value
    assert not isinstance(err, UpstreamTimeout)
    assert err.status == 502
    assert err.code == "bad_gateway"
    assert "unreachable" in err.message


async def test_slow_provider_is_504(fake: FakeProvider, client: ProviderClient) -> None:
    fake.set_behavior(delay_ms=30_000)  # far past first_byte (1 s); the fake's stop cuts it short
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout) as info:
        await client.open(_provider(fake.base_url), BODY, api_key=None)
    assert time.monotonic() - started < 15  # the timeout ended it, not the answer
    assert info.value.status == 504
    assert info.value.code == "upstream_timeout"


async def test_complete_routes_and_strips_the_prefix(fake: FakeProvider) -> None:
    registry = ProviderRegistry.from_env(
        {"MEMGATE_PROVIDER_FAKE_BASE_URL": fake.base_url, "MEMGATE_PROVIDER_FAKE_API_KEY": "sk-f"}
    )
    client = ProviderClient(registry, timeouts=Timeouts(connect=1.0, first_byte=2.0))
    try:
        text = (await client.complete("fake/fake-model", [{"role": "user", "content": "hi there"}], temperature=0)).text
    finally:
        await client.close()
    assert text == "fake answer to: hi there"
    body = fake.requests[-1]["body"]
    assert body["model"] == "fake-model"
    assert body["temperature"] == 0
    assert fake.requests[-1]["api_key"] == "sk-f"
