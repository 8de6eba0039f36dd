"""The fake provider's Anthropic Messages route, exercised through the official anthropic SDK over real HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest
from anthropic.types import Message, TextBlock, ToolUseBlock

from memgate_testing.fake_provider import FakeProvider

KEY = "sk-ant-test-key"
MODEL = "claude-fake"
USER_HI: list[Any] = [{"role": "user", "content": "hello there"}]
WEATHER_TOOL: dict[str, Any] = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


class Seen:
    """A responder that keeps the chat bodies the route translated to, and leaves the answer alone."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []

    def __call__(self, body: dict[str, Any]) -> str | None:
        self.bodies.append(body)
        return None


@pytest.fixture(scope="module")
def seen() -> Seen:
    return Seen()


@pytest.fixture(scope="module")
def fake(seen: Seen) -> Iterator[FakeProvider]:
    with FakeProvider(expected_key=KEY, responder=seen) as provider:
        yield provider


@pytest.fixture(autouse=True)
def _fresh(fake: FakeProvider, seen: Seen) -> None:
    fake.reset()
    seen.bodies.clear()


def _x_api_key(key: str) -> dict[str, Any]:
    # This SDK sends `api_key` as a bearer token; Anthropic's own header is x-api-key, so send
    # only that (the bearer path has its own test).
    return {"X-Api-Key": key, "Authorization": anthropic.omit}


@pytest.fixture
def client(fake: FakeProvider) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=fake.url, api_key=KEY, default_headers=_x_api_key(KEY), max_retries=0) as sdk:
        yield sdk


def _text(message: Message) -> str:
    return "".join(block.text for block in message.content if isinstance(block, TextBlock))


def test_plain_message_answers_and_records(fake: FakeProvider, client: anthropic.Anthropic) -> None:
    message = client.messages.create(model=MODEL, max_tokens=100, messages=USER_HI)

    assert message.id.startswith("msg_fake")
    assert (message.type, message.role, message.model) == ("message", "assistant", MODEL)
    assert _text(message) == "fake answer to: hello there"
    assert (message.stop_reason, message.stop_sequence) == ("end_turn", None)
    assert (message.usage.input_tokens, message.usage.output_tokens) == (2, 5)
    [recorded] = fake.requests
    assert recorded["path"] == "/v1/messages"
    assert recorded["body"]["messages"] == USER_HI
    assert recorded["headers"]["x-api-key"] == KEY
    assert "authorization" not in recorded["headers"]
    assert recorded["api_key"] == KEY


def test_stream_text_and_final_message(fake: FakeProvider, client: anthropic.Anthropic) -> None:
    with client.messages.stream(model=MODEL, max_tokens=100, messages=USER_HI) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()

    assert len(pieces) > 2
    assert "".join(pieces) == "fake answer to: hello there"
    assert _text(final) == "fake answer to: hello there"
    assert final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (2, 5)
    assert fake.stream_outcomes == ["completed"]


def test_stream_event_sequence_on_the_wire(fake: FakeProvider) -> None:
    body = {"model": MODEL, "max_tokens": 100, "stream": True, "messages": USER_HI}
    response = httpx.post(fake.url + "/v1/messages", json=body, headers={"x-api-key": KEY})

    assert response.headers["content-type"] == "text/event-stream"
    events = [frame.split("\n") for frame in response.text.strip().split("\n\n")]
    names = [lines[0].removeprefix("event: ") for lines in events]
    datas = [json.loads(lines[1].removeprefix("data: ")) for lines in events]
    assert [d["type"] for d in datas] == names  # every event line repeats its data's type
    deltas = names.count("content_block_delta")
    assert names == [
        "message_start",
        "ping",
        "content_block_start",
        *["content_block_delta"] * deltas,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert datas[0]["message"]["content"] == [] and datas[0]["message"]["usage"]["output_tokens"] == 1
    assert datas[2]["content_block"] == {"type": "text", "text": ""}
    assert datas[-2]["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert datas[-2]["usage"] == {"output_tokens": 5}


def test_tool_use_round_trip(seen: Seen, client: anthropic.Anthropic) -> None:
    question = [{"role": "user", "content": "weather in Oslo?"}]
    first = client.messages.create(model=MODEL, max_tokens=100, tools=[WEATHER_TOOL], messages=question)

    assert first.stop_reason == "tool_use"
    [call] = first.content
    assert isinstance(call, ToolUseBlock)
    assert call.id.startswith("toolu_") and call.name == "get_weather" and call.input == {}
    result = {"type": "tool_result", "tool_use_id": call.id, "content": [{"type": "text", "text": "sunny"}]}
    turns = [*question, {"role": "assistant", "content": [call.model_dump()]}, {"role": "user", "content": [result]}]
    second = client.messages.create(model=MODEL, max_tokens=100, tools=[WEATHER_TOOL], messages=turns)

    assert second.stop_reason == "end_turn"
    assert _text(second) == "fake answer to: weather in Oslo?"
    translated = seen.bodies[-1]["messages"]
    assert translated[1]["tool_calls"] == [
        {"id": call.id, "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    ]
    assert translated[2] == {"role": "tool", "tool_call_id": call.id, "content": "sunny"}


def test_tool_use_stream(client: anthropic.Anthropic) -> None:
    with client.messages.stream(model=MODEL, max_tokens=100, tools=[WEATHER_TOOL], messages=USER_HI) as stream:
        final = stream.get_final_message()

    assert final.stop_reason == "tool_use"
    [call] = final.content
    assert isinstance(call, ToolUseBlock) and call.name == "get_weather" and call.input == {}


def test_request_is_translated_for_the_reply_logic(seen: Seen, client: anthropic.Anthropic) -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "aGk="}}
    content: list[Any] = [{"type": "text", "text": "look"}, image, {"type": "text", "text": "here"}]
    system: list[Any] = [{"type": "text", "text": "memory: likes tea"}, {"type": "text", "text": "be brief"}]
    client.messages.create(model=MODEL, max_tokens=100, system=system, messages=[{"role": "user", "content": content}])

    assert seen.bodies[-1]["messages"] == [
        {"role": "system", "content": "memory: likes tea\nbe brief"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "look\nhere"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,aGk="}},
            ],
        },
    ]


def test_fixed_reply_cut_at_max_tokens(fake: FakeProvider, client: anthropic.Anthropic) -> None:
    fake.set_behavior(reply="one two three four")
    message = client.messages.create(model=MODEL, max_tokens=2, messages=USER_HI)

    assert _text(message) == "one two"
    assert message.stop_reason == "max_tokens"


def test_wrong_key_is_an_authentication_error(fake: FakeProvider) -> None:
    headers = _x_api_key("sk-wrong")
    with anthropic.Anthropic(base_url=fake.url, api_key="sk-wrong", default_headers=headers, max_retries=0) as sdk:
        with pytest.raises(anthropic.AuthenticationError) as caught:
            sdk.messages.create(model=MODEL, max_tokens=100, messages=USER_HI)

    assert caught.value.status_code == 401
    error = {"type": "authentication_error", "message": "invalid x-api-key"}
    assert caught.value.body == {"type": "error", "error": error}
    assert fake.requests[0]["api_key"] == "sk-wrong"


def test_missing_key_is_an_authentication_error(fake: FakeProvider) -> None:
    response = httpx.post(fake.url + "/v1/messages", json={"model": MODEL, "max_tokens": 10, "messages": USER_HI})

    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"
    assert fake.requests[0]["api_key"] is None


def test_bearer_key_is_accepted(fake: FakeProvider) -> None:
    with anthropic.Anthropic(base_url=fake.url, auth_token=KEY, max_retries=0) as sdk:
        message = sdk.messages.create(model=MODEL, max_tokens=100, messages=USER_HI)

    assert message.stop_reason == "end_turn"
    assert fake.requests[0]["headers"]["authorization"] == f"Bearer {KEY}"
    assert fake.requests[0]["api_key"] == KEY


def test_missing_max_tokens_is_a_bad_request(client: anthropic.Anthropic) -> None:
    # The SDK checks max_tokens itself, so the body goes out through its low-level post.
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.post("/v1/messages", body={"model": MODEL, "messages": USER_HI}, cast_to=Message)

    assert caught.value.type == "invalid_request_error"
    assert "max_tokens" in (caught.value.api_message or "")


@pytest.mark.parametrize(
    ("status", "error", "kind"),
    [
        (429, anthropic.RateLimitError, "rate_limit_error"),
        (500, anthropic.InternalServerError, "api_error"),
        (529, anthropic.OverloadedError, "overloaded_error"),
    ],
)
def test_told_to_fail_in_anthropic_shape(
    fake: FakeProvider, client: anthropic.Anthropic, status: int, error: type[anthropic.APIStatusError], kind: str
) -> None:
    fake.set_behavior(fail_status=status, fail_times=1)
    with pytest.raises(error) as caught:
        client.messages.create(model=MODEL, max_tokens=100, messages=USER_HI)
    assert (caught.value.status_code, caught.value.type) == (status, kind)

    assert client.messages.create(model=MODEL, max_tokens=100, messages=USER_HI).stop_reason == "end_turn"


async def test_async_stream(fake: FakeProvider) -> None:
    headers = _x_api_key(KEY)
    async with anthropic.AsyncAnthropic(base_url=fake.url, api_key=KEY, default_headers=headers, max_retries=0) as sdk:
        async with sdk.messages.stream(model=MODEL, max_tokens=100, messages=USER_HI) as stream:
            text = "".join([piece async for piece in stream.text_stream])
    assert text == "fake answer to: hello there"


def test_fast_mode_serves_messages() -> None:
    with FakeProvider(fast=True) as fast, anthropic.Anthropic(base_url=fast.url, api_key=KEY, max_retries=0) as sdk:
        message = sdk.messages.create(model=MODEL, max_tokens=100, messages=USER_HI)
        with sdk.messages.stream(model=MODEL, max_tokens=100, messages=USER_HI) as stream:
            streamed = stream.get_final_message()
        assert fast.requests == []  # fast mode records nothing

    assert _text(message) == _text(streamed) == "fake answer to: hello there"


def test_other_methods_on_messages_are_not_found(fake: FakeProvider) -> None:
    response = httpx.get(fake.url + "/v1/messages", headers={"x-api-key": KEY})

    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found_error"
