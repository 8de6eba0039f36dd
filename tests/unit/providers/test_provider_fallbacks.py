"""ProviderClient.open_chat along fallback chains, safe retries, BYOK keys and fetch_models,
against real local HTTP servers (two fake providers) and a closed port."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import msgspec
import pytest

from memgate_core.errors import InvalidRequest, UpstreamError, UpstreamTimeout
from memgate_providers import http
from memgate_providers.client import ProviderClient, Timeouts, UpstreamAuthError, UpstreamStatusError
from memgate_providers.config import parse_config
from memgate_providers.registry import ProviderRegistry, Route
from memgate_testing.fake_provider import FakeProvider

BODY = {"model": "ignored", "messages": [{"role": "user", "content": "hello"}]}
FAST = Timeouts(connect=1.0, first_byte=1.0, total=30.0)


@pytest.fixture(scope="module")
def fakes() -> Iterator[tuple[FakeProvider, FakeProvider]]:
    with FakeProvider() as first, FakeProvider() as second:
        yield first, second


@pytest.fixture
def primary(fakes: tuple[FakeProvider, FakeProvider]) -> Iterator[FakeProvider]:
    fakes[0].reset()
    yield fakes[0]
    fakes[0].reset()


@pytest.fixture
def backup(fakes: tuple[FakeProvider, FakeProvider]) -> Iterator[FakeProvider]:
    fakes[1].reset()
    yield fakes[1]
    fakes[1].reset()


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def make_client(
    env: dict[str, str], config: dict[str, Any] | None = None, timeouts: Timeouts = FAST
) -> ProviderClient:
    registry = ProviderRegistry.from_env(env, config=parse_config(config or {}))
    return ProviderClient(registry, timeouts=timeouts)


def two_providers(primary: FakeProvider, backup: FakeProvider, **extra: str) -> dict[str, str]:
    return {
        "MEMGATE_PROVIDER_ONE_BASE_URL": primary.base_url, "MEMGATE_PROVIDER_ONE_API_KEY": "key-one",
        "MEMGATE_PROVIDER_TWO_BASE_URL": backup.base_url, "MEMGATE_PROVIDER_TWO_API_KEY": "key-two",
        **extra,
    }


CHAIN = {"aliases": {"fast": "one/model-a"}, "fallbacks": {"fast": ["two/model-b"]}}


@pytest.fixture
async def client(primary: FakeProvider, backup: FakeProvider) -> AsyncIterator[ProviderClient]:
    c = make_client(two_providers(primary, backup), CHAIN)
    yield c
    await c.close()


async def answer(response: http.Response) -> dict[str, Any]:
    try:
        return msgspec.json.decode(await response.aread())
    finally:
        await response.aclose()


# ------------------------------------------------------------------ fallbacks


async def test_healthy_primary_answers(client: ProviderClient, primary: FakeProvider, backup: FakeProvider) -> None:
    response, route = await client.open_chat("fast", BODY)
    assert route == Route("one", "model-a")
    assert (await answer(response))["model"] == "model-a"
    assert primary.requests[-1]["body"]["model"] == "model-a"
    assert primary.requests[-1]["body"]["messages"] == BODY["messages"]
    assert primary.requests[-1]["api_key"] == "key-one"
    assert backup.requests == []


@pytest.mark.parametrize("status", [429, 500, 502, 503])
async def test_429_and_5xx_fall_back(
    client: ProviderClient, primary: FakeProvider, backup: FakeProvider, status: int
) -> None:
    primary.set_behavior(fail_status=status)
    response, route = await client.open_chat("fast", BODY)
    assert route == Route("two", "model-b") and route.name == "two/model-b"
    data = await answer(response)
    assert data["model"] == "model-b"
    assert data["choices"][0]["message"]["content"] == "fake answer to: hello"
    assert len(primary.requests) == 1  # the failed one was asked, once
    assert backup.requests[-1]["body"]["model"] == "model-b"
    assert backup.requests[-1]["api_key"] == "key-two"


async def test_slow_primary_times_out_and_falls_back(
    client: ProviderClient, primary: FakeProvider, backup: FakeProvider
) -> None:
    primary.set_behavior(delay_ms=30_000)  # far past first_byte (1 s)
    started = time.monotonic()
    response, route = await client.open_chat("fast", BODY)
    assert time.monotonic() - started < 15  # the timeout moved on, not the answer
    assert route == Route("two", "model-b")
    assert (await answer(response))["model"] == "model-b"
    assert len(primary.requests) == 1 and len(backup.requests) == 1


async def test_streaming_falls_back_before_any_byte(
    client: ProviderClient, primary: FakeProvider, backup: FakeProvider
) -> None:
    primary.set_behavior(fail_status=503)
    response, route = await client.open_chat("fast", {**BODY, "stream": True})
    try:
        assert route == Route("two", "model-b")
        assert response.headers["content-type"].startswith("text/event-stream")
        text = b"".join([chunk async for chunk in response.aiter_raw()]).decode()
    finally:
        await response.aclose()
    assert text.rstrip().endswith("data: [DONE]") and '"model":"model-b"' in text
    assert backup.requests[-1]["body"]["stream"] is True


@pytest.mark.parametrize("status", [400, 401, 404, 422])
async def test_other_4xx_do_not_fall_back(
    client: ProviderClient, primary: FakeProvider, backup: FakeProvider, status: int
) -> None:
    primary.set_behavior(fail_status=status)
    with pytest.raises((UpstreamStatusError, UpstreamAuthError)) as info:
        await client.open_chat("fast", BODY)
    if status == 401:  # memgate's own provider key was refused: a gateway problem, a 502
        assert isinstance(info.value, UpstreamAuthError) and info.value.status == 502
    else:
        assert info.value.status == status
    assert "'one'" in info.value.message
    assert len(primary.requests) == 1
    assert backup.requests == []


async def test_all_routes_fail_raises_the_last_error(
    client: ProviderClient, primary: FakeProvider, backup: FakeProvider
) -> None:
    primary.set_behavior(fail_status=503)
    backup.set_behavior(fail_status=429)
    with pytest.raises(UpstreamStatusError) as info:
        await client.open_chat("fast", BODY)
    assert info.value.status == 429 and "'two'" in info.value.message
    assert len(primary.requests) == 1 and len(backup.requests) == 1


async def test_failure_without_fallbacks_is_not_retried(
    client: ProviderClient, primary: FakeProvider, backup: FakeProvider
) -> None:
    primary.set_behavior(fail_status=503)
    with pytest.raises(UpstreamStatusError) as info:
        await client.open_chat("one/model-a", BODY)
    assert info.value.status == 502
    primary.set_behavior(fail_status=None, delay_ms=30_000)
    with pytest.raises(UpstreamTimeout):
        await client.open_chat("one/model-a", BODY)
    assert len(primary.requests) == 2  # one per call: never repeated after it may have arrived
    assert backup.requests == []


async def test_total_deadline_stops_the_chain(primary: FakeProvider, backup: FakeProvider) -> None:
    client = make_client(two_providers(primary, backup), CHAIN, Timeouts(connect=1.0, first_byte=5.0, total=0.3))
    primary.set_behavior(delay_ms=30_000)
    started = time.monotonic()
    try:
        with pytest.raises(UpstreamTimeout) as info:
            await client.open_chat("fast", BODY)
    finally:
        await client.close()
    assert time.monotonic() - started < 4  # the 0.3 s total, well before first_byte (5 s) would
    assert "'one'" in info.value.message
    assert backup.requests == []


# ------------------------------------------------------------------ connect errors


async def test_connect_error_is_retried_once_then_falls_back(primary: FakeProvider, backup: FakeProvider) -> None:
    dead = closed_port_url()
    env = {"MEMGATE_PROVIDER_DEAD_BASE_URL": dead, **two_providers(primary, backup)}
    client = make_client(env, {"fallbacks": {"dead/m": ["two/model-b"]}})
    attempts: list[str] = []
    send = client.http.send

    async def counting_send(request: http.Request, **kw: Any) -> http.Response:
        attempts.append(str(request.url))
        return await send(request, **kw)

    client.http.send = counting_send  # type: ignore[method-assign]
    try:
        response, route = await client.open_chat("dead/m", BODY)
        await response.aclose()
    finally:
        await client.close()
    assert route == Route("two", "model-b")
    assert attempts == [dead + "/chat/completions"] * 2 + [backup.base_url + "/chat/completions"]


async def test_unreachable_everywhere_is_a_502(primary: FakeProvider, monkeypatch: pytest.MonkeyPatch,
                                               caplog: pytest.LogCaptureFixture) -> None:
    client = make_client({"MEMGATE_PROVIDER_DEAD_BASE_URL": closed_port_url()})
    try:
        with pytest.raises(UpstreamError) as info:
            await client.open_chat("dead/m", BODY)
    finally:
        await client.close()
    assert not isinstance(info.value, UpstreamTimeout)
    assert info.value.status == 502 and "unreachable (ConnectError" in info.value.message
    assert "127.0.0.1" not in info.value.message and "could not connect" in caplog.text  # (why: in the log)
    monkeypatch.setenv("HTTPS_PROXY", "https://proxy.example:3128")
    proxied = make_client({"MEMGATE_PROVIDER_FAR_BASE_URL": "https://llm.example/v1", "MEMGATE_PROVIDER_FAR_API_KEY": "k"})
    try:
        with pytest.raises(UpstreamError) as info:
            await proxied.open_chat("far/m", BODY)
    finally:
        await proxied.close()
    assert "only http:// proxies" in caplog.text and "proxy.example" not in info.value.message


# ------------------------------------------------------------------ bring your own key


async def test_a_callers_key_only_for_its_provider(primary: FakeProvider, backup: FakeProvider) -> None:
    config = {"fallbacks": {"one/model-a": ["one/model-c", "two/model-b"]}}
    client = make_client(two_providers(primary, backup), config)
    primary.set_behavior(fail_status=503)
    try:
        response, route = await client.open_chat("one/model-a", BODY, api_keys={"one": "sk-byok"})
        await response.aclose()
    finally:
        await client.close()
    assert route == Route("two", "model-b")
    assert [(r["body"]["model"], r["api_key"]) for r in primary.requests] == [
        ("model-a", "sk-byok"), ("model-c", "sk-byok"),
    ]
    assert backup.requests[-1]["api_key"] == "key-two"  # memgate's own key, never the client's


async def test_byok_skips_other_providers_without_a_key(primary: FakeProvider, backup: FakeProvider) -> None:
    env = {"MEMGATE_PROVIDER_ONE_BASE_URL": primary.base_url,  # no key of ours for "one"
           "MEMGATE_PROVIDER_TWO_BASE_URL": backup.base_url, "MEMGATE_PROVIDER_TWO_API_KEY": "key-two"}
    config = {"providers": {"one": {"api_key_env": "ONE_KEY"}, "three": {
        "base_url": backup.base_url, "api_key_env": "THREE_KEY"}},
        "fallbacks": {"two/model-b": ["three/model-x", "one/model-a"]}}
    client = make_client(env, config)
    backup.set_behavior(fail_status=503)
    try:
        # BYOK for "two": "three" has no key (skipped); "one" has no key (skipped): two's error.
        with pytest.raises(UpstreamStatusError) as info:
            await client.open_chat("two/model-b", BODY, api_keys={"two": "sk-byok"})
        assert info.value.status == 502 and "'two'" in info.value.message
        assert [r["api_key"] for r in backup.requests] == ["sk-byok"]
        assert primary.requests == []
        # Without BYOK, a chain none of whose providers has a key is a clear 400.
        with pytest.raises(InvalidRequest) as missing:
            await client.open_chat("one/model-a", BODY)
        assert missing.value.code == "provider_not_configured" and "ONE_KEY" in missing.value.message
        # With BYOK the unconfigured primary is used with the client's key.
        response, route = await client.open_chat("one/model-a", BODY, api_keys={"one": "sk-client"})
        await response.aclose()
        assert route == Route("one", "model-a") and primary.requests[-1]["api_key"] == "sk-client"
    finally:
        await client.close()


async def test_each_route_goes_out_with_its_providers_key(primary: FakeProvider, backup: FakeProvider) -> None:
    """A tenant's keys for several providers: a fallback to another of them uses the tenant's
    key for it (it went out with memgate's), and one whose key cannot be read is skipped."""
    config = {"fallbacks": {"one/model-a": ["two/model-b"]}}
    client = make_client(two_providers(primary, backup), config)
    primary.set_behavior(fail_status=503)
    try:
        response, route = await client.open_chat("one/model-a", BODY, api_keys={"one": "sk-one", "two": "sk-two"})
        await response.aclose()
        assert route == Route("two", "model-b") and backup.requests[-1]["api_key"] == "sk-two"
        sent = len(backup.requests)
        with pytest.raises(UpstreamStatusError):  # (the primary's 503: the unreadable fallback is not tried)
            await client.open_chat("one/model-a", BODY, api_keys={"one": "sk-one", "two": None})
        assert len(backup.requests) == sent  # never memgate's key in place of the tenant's
    finally:
        await client.close()
    registry = client.registry
    assert registry.is_configured("one/model-a", {"two": None})  # (memgate's key for "one")
    assert not ProviderRegistry.from_env({"MEMGATE_PROVIDER_TWO_BASE_URL": backup.base_url}).is_configured(
        "two/model-b", {"two": None})


async def test_unconfigured_primary_is_skipped_for_a_configured_fallback(
    primary: FakeProvider, backup: FakeProvider
) -> None:
    env = {"MEMGATE_PROVIDER_TWO_BASE_URL": backup.base_url, "MEMGATE_PROVIDER_TWO_API_KEY": "key-two"}
    config = {"providers": {"one": {"base_url": primary.base_url, "api_key_env": "ONE_KEY"}},
              "aliases": {"fast": "one/model-a"}, "fallbacks": {"fast": ["two/model-b"]}}
    client = make_client(env, config)
    try:
        text = (await client.complete("fast", [{"role": "user", "content": "hi"}], temperature=0)).text
    finally:
        await client.close()
    assert text == "fake answer to: hi"
    assert primary.requests == [] and backup.requests[-1]["body"]["temperature"] == 0


# ------------------------------------------------------------------ complete, open, models


async def test_complete_uses_aliases_and_fallbacks(
    client: ProviderClient, primary: FakeProvider, backup: FakeProvider
) -> None:
    primary.set_behavior(fail_status=500)
    assert (await client.complete("fast", [{"role": "user", "content": "hey"}])).text == "fake answer to: hey"
    assert backup.requests[-1]["body"]["model"] == "model-b"


async def test_open_still_sends_to_one_provider(client: ProviderClient, primary: FakeProvider) -> None:
    provider, route = client.registry.route("fast")
    response = await client.open(provider, msgspec.json.encode({**BODY, "model": route.model}), api_key=None)
    assert (await answer(response))["model"] == "model-a"


async def answering(reply: bytes) -> tuple[asyncio.Server, int]:
    """A server on a free port that answers every request with `reply`, then closes; and its port."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(reply)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_retry_after_of_a_429_is_kept() -> None:
    body = b'{"error": {"message": "slow down", "type": "rate_limit_error"}}'
    server, port = await answering(
        b"HTTP/1.1 429 Too Many Requests\r\nretry-after: 7\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body))
    client = make_client({"MEMGATE_PROVIDER_X_BASE_URL": f"http://127.0.0.1:{port}/v1"})
    try:
        with pytest.raises(UpstreamStatusError) as info:
            await client.open_chat("x/m", BODY)
    finally:
        await client.close()
        server.close()
    assert info.value.status == 429 and info.value.type == "rate_limit_error"
    assert info.value.headers == {"retry-after": "7"} and "slow down" in info.value.message


async def test_a_redirect_is_a_failure_that_says_where_and_falls_back(backup: FakeProvider) -> None:
    """A base URL on http:// where the provider redirects to https:// (a 301 with a body
    that is no answer): a 502 naming the redirect, and the fallback answers (it was passed
    on as a 200 with the redirect's body)."""
    server, port = await answering(b"HTTP/1.1 301 Moved Permanently\r\nlocation: https://llm.example/v1/chat/"
                                   b"completions\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
    env = {"MEMGATE_PROVIDER_X_BASE_URL": f"http://127.0.0.1:{port}/v1", "MEMGATE_PROVIDER_X_API_KEY": "k",
           "MEMGATE_PROVIDER_TWO_BASE_URL": backup.base_url, "MEMGATE_PROVIDER_TWO_API_KEY": "key-two"}
    try:
        alone = make_client(env)
        with pytest.raises(UpstreamError) as info:
            await alone.open_chat("x/m", BODY)
        await alone.close()
        assert info.value.status == 502 and "redirect (HTTP 301) to https://llm.example/v1" in info.value.message
        chained = make_client(env, {"fallbacks": {"x/m": ["two/model-b"]}})
        response, route = await chained.open_chat("x/m", BODY)
        assert route == Route("two", "model-b") and (await answer(response))["model"] == "model-b"
        await chained.close()
    finally:
        server.close()


async def test_fetch_models(primary: FakeProvider, backup: FakeProvider) -> None:
    env = {**two_providers(primary, backup), "MEMGATE_PROVIDER_DEAD_BASE_URL": closed_port_url()}
    client = make_client(env)
    try:
        models = await client.fetch_models(["one", "dead", "nope", "ONE"])
        everything = {m["id"] for m in await client.fetch_models()}
    finally:
        await client.close()
    assert [m["id"] for m in models] == ["one/fake-model", "one/gpt-4o-mini", "one/gpt-4o"]
    assert models[0] == {"id": "one/fake-model", "object": "model", "created": 0, "owned_by": "one"}
    assert {"one/gpt-4o", "two/gpt-4o"} <= everything
    assert not any(i.startswith("dead/") for i in everything)
