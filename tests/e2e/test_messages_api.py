"""The official `anthropic` Python SDK against `memgate up`'s POST /v1/messages.

Two routes behind one gateway: `anthropic/...` reaches the fake provider's own Messages API
(natively: the memory block goes into `system`), `fake/...` its chat completions (translated
both ways). Either way the exchange is remembered like a chat completion's, streams included.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest

from memgate_testing.fake_provider import FakeProvider
from memgate_testing.gateway import GatewayProcess

NATIVE = "anthropic/claude-fake"
TRANSLATED = "fake/gpt-test"
PROVIDER_KEY = "sk-ant-fake"
TOOLS: list[Any] = [{"name": "get_weather", "description": "The weather in a city.",
                     "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, fake_provider: FakeProvider) -> Iterator[GatewayProcess]:
    """`memgate up` whose `anthropic` provider is the fake provider (its Messages API)."""
    process = GatewayProcess(tmp_path_factory.mktemp("messages") / "data", provider_url=fake_provider.base_url,
                             env={"MEMGATE_PROVIDER_ANTHROPIC_BASE_URL": fake_provider.base_url,
                                  "MEMGATE_PROVIDER_ANTHROPIC_API_KEY": PROVIDER_KEY})
    process.start()
    yield process
    process.stop()


@pytest.fixture()
def client(gateway: GatewayProcess) -> anthropic.Anthropic:
    # The SDK appends /v1/messages to its base URL. Its `api_key` goes out as a bearer token;
    # x-api-key, Anthropic's own header, has a test of its own.
    return anthropic.Anthropic(base_url=gateway.base_url.removesuffix("/v1"), api_key=gateway.api_key,
                               max_retries=0)


def _memory(prefix: str) -> dict[str, str]:
    tag = uuid.uuid4().hex[:10]
    return {"x-thread-id": f"{prefix}-{tag}", "x-resource-id": f"user-{tag}"}


def _user(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


def _text(message: Any) -> str:
    return "".join(block.text for block in message.content if block.type == "text")


def _last(provider: FakeProvider, path: str) -> dict[str, Any]:
    request: dict[str, Any] = [r for r in provider.requests if r["path"] == path][-1]
    return request


@pytest.mark.parametrize("model", [NATIVE, TRANSLATED])
def test_the_second_message_knows_the_first(client: anthropic.Anthropic, provider: FakeProvider, model: str) -> None:
    memory = _memory("msg")
    first = client.messages.with_raw_response.create(
        model=model, max_tokens=64, messages=_user("My name is Brigitte and I live in Lyon."), extra_headers=memory)
    assert first.headers["x-memory"] == "empty"
    assert first.parse().type == "message" and first.parse().role == "assistant"

    second = client.messages.with_raw_response.create(
        model=model, max_tokens=64, system="Answer briefly.", messages=_user("What is my name?"),
        extra_headers=memory)
    assert second.headers["x-memory"] == "injected"
    answer = second.parse()
    assert _text(answer) == "Your name is Brigitte."
    assert answer.stop_reason == "end_turn" and answer.usage.output_tokens > 0
    if model == NATIVE:
        sent = _last(provider, "/v1/messages")
        assert sent["api_key"] == PROVIDER_KEY and sent["body"]["model"] == "claude-fake"
        system = sent["body"]["system"]  # the block first, the client's own prompt kept after it
        assert system.startswith("<memgate_memory>") and "Brigitte" in system
        assert system.endswith("</memgate_memory>\n\nAnswer briefly.")
    else:
        messages = _last(provider, "/v1/chat/completions")["body"]["messages"]
        assert messages[0]["role"] == "system" and messages[0]["content"].startswith("<memgate_memory>")
        assert messages[1] == {"role": "system", "content": "Answer briefly."}
        assert messages[2] == {"role": "user", "content": "What is my name?"}


def test_system_blocks_keep_theirs_after_the_memory_block(client: anthropic.Anthropic, provider: FakeProvider) -> None:
    memory = _memory("blocks")
    client.messages.create(model=NATIVE, max_tokens=64, messages=_user("My name is Odile."), extra_headers=memory)
    client.messages.create(model=NATIVE, max_tokens=64, messages=_user("What is my name?"), extra_headers=memory,
                           system=[{"type": "text", "text": "Be kind.", "cache_control": {"type": "ephemeral"}}])
    system = _last(provider, "/v1/messages")["body"]["system"]
    assert [b["type"] for b in system] == ["text", "text"]
    assert system[0]["text"].startswith("<memgate_memory>") and "Odile" in system[0]["text"]
    assert system[1] == {"type": "text", "text": "Be kind.", "cache_control": {"type": "ephemeral"}}


@pytest.mark.parametrize("model", [NATIVE, TRANSLATED])
def test_a_stream_is_remembered_before_it_ends(client: anthropic.Anthropic, model: str) -> None:
    memory = _memory("msg-stream")
    with client.messages.stream(model=model, max_tokens=64, messages=_user("My name is Ines."),
                                extra_headers=memory) as stream:
        streamed = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert streamed == _text(final) != ""
    assert final.stop_reason == "end_turn"
    # Sent the instant the first stream ended: read-your-writes holds for streams too.
    with client.messages.stream(model=model, max_tokens=64, messages=_user("What is my name?"),
                                extra_headers=memory) as stream:
        assert "".join(stream.text_stream) == "Your name is Ines."


@pytest.mark.parametrize("model", [NATIVE, TRANSLATED])
@pytest.mark.parametrize("stream", [False, True])
def test_tool_use_and_its_result(client: anthropic.Anthropic, provider: FakeProvider, model: str,
                                 stream: bool) -> None:
    memory = _memory("msg-tools")
    question = _user("What is the weather in Oslo?")
    if stream:
        with client.messages.stream(model=model, max_tokens=64, messages=question, tools=TOOLS,
                                    extra_headers=memory) as events:
            called = events.get_final_message()
    else:
        called = client.messages.create(model=model, max_tokens=64, messages=question, tools=TOOLS,
                                        extra_headers=memory)
    assert called.stop_reason == "tool_use"
    use = next(block for block in called.content if block.type == "tool_use")
    assert use.name == "get_weather" and isinstance(use.input, dict)

    history: list[Any] = [*question, {"role": "assistant", "content": [b.model_dump() for b in called.content]},
                          {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id,
                                                         "content": "Sunny, 21 degrees."}]}]
    answer = client.messages.create(model=model, max_tokens=64, messages=history, tools=TOOLS, extra_headers=memory)
    assert answer.stop_reason == "end_turn" and _text(answer)
    if model == TRANSLATED:  # the result answers the call it belongs to
        sent = _last(provider, "/v1/chat/completions")["body"]["messages"]
        assert sent[-2]["tool_calls"][0]["id"] == use.id and sent[-2]["tool_calls"][0]["function"]["name"] == "get_weather"
        assert sent[-1] == {"role": "tool", "tool_call_id": use.id, "content": "Sunny, 21 degrees."}


def test_x_api_key_authenticates(gateway: GatewayProcess) -> None:
    base = gateway.base_url.removesuffix("/v1")
    keyed = anthropic.Anthropic(base_url=base, api_key="unused", max_retries=0,
                                default_headers={"X-Api-Key": gateway.api_key, "Authorization": anthropic.omit})
    assert _text(keyed.messages.create(model=TRANSLATED, max_tokens=16, messages=_user("hello")))
    wrong = anthropic.Anthropic(base_url=base, api_key="unused", max_retries=0,
                                default_headers={"X-Api-Key": "msk_wrong", "Authorization": anthropic.omit})
    with pytest.raises(anthropic.AuthenticationError) as failed:
        wrong.messages.create(model=TRANSLATED, max_tokens=16, messages=_user("hello"))
    assert failed.value.body == {"type": "error", "error": {"type": "authentication_error",
                                                             "message": failed.value.body["error"]["message"]}}


@pytest.mark.parametrize(("body", "param"), [
    ({"model": TRANSLATED, "messages": [{"role": "user", "content": "hi"}]}, "max_tokens"),
    ({"model": TRANSLATED, "max_tokens": 16, "messages": []}, "messages"),
    ({"model": TRANSLATED, "max_tokens": 16, "messages": [{"role": "system", "content": "hi"}]}, "messages[0]"),
    ({"model": "nope/x", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}, "model"),
])
def test_bad_requests_get_the_messages_error_shape_and_store_nothing(
        gateway: GatewayProcess, provider: FakeProvider, body: dict[str, Any], param: str) -> None:
    memory = _memory("msg-bad")
    response = httpx.post(f"{gateway.base_url}/messages", json=body, headers={**gateway.headers(), **memory})
    assert response.status_code == 400, response.text
    error = response.json()
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    assert param.split("[")[0] in error["error"]["message"]
    assert provider.requests == []
    thread = httpx.get(f"{gateway.base_url}/memory/threads/{memory['x-thread-id']}", headers=gateway.headers())
    assert thread.status_code == 404  # nothing stored for a rejected request


def test_a_provider_error_keeps_its_status_in_the_messages_shape(client: anthropic.Anthropic,
                                                                 provider: FakeProvider) -> None:
    provider.set_behavior(fail_status=429, fail_times=1)
    with pytest.raises(anthropic.RateLimitError) as failed:
        client.messages.create(model=NATIVE, max_tokens=16, messages=_user("hello"))
    assert failed.value.body["type"] == "error"
    assert failed.value.body["error"]["type"] == "rate_limit_error"


def test_the_openapi_schema_lists_the_route(gateway: GatewayProcess) -> None:
    paths = httpx.get(f"{gateway.base_url.removesuffix('/v1')}/docs/openapi.json").json()["paths"]
    assert "post" in paths["/v1/messages"]
