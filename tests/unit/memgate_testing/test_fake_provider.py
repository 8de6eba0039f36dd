"""The fake OpenAI provider, exercised through the official openai SDK over real HTTP."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import openai
import pytest
from helpers import wait_for

from memgate_testing.fake_provider import Behavior, FakeProvider, FakeProviderProcess

KEY = "sk-test-key"
USER_HI = [{"role": "user", "content": "hello there"}]


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProvider]:
    with FakeProvider() as provider:
        yield provider


@pytest.fixture(autouse=True)
def _fresh(fake: FakeProvider) -> None:
    fake.reset()


@pytest.fixture
def client(fake: FakeProvider) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=fake.base_url, api_key=KEY, max_retries=0) as sdk:
        yield sdk


def test_sync_completion_echoes_and_records(fake: FakeProvider, client: openai.OpenAI) -> None:
    result = client.chat.completions.create(model="gpt-4o-mini", messages=USER_HI)

    assert result.object == "chat.completion"
    assert result.model == "gpt-4o-mini"
    assert result.choices[0].message.role == "assistant"
    assert result.choices[0].message.content == "fake answer to: hello there"
    assert result.choices[0].finish_reason == "stop"
    assert (result.usage.prompt_tokens, result.usage.completion_tokens, result.usage.total_tokens) == (2, 5, 7)
    [recorded] = fake.requests
    assert recorded["path"] == "/v1/chat/completions"
    assert recorded["body"]["messages"] == USER_HI
    assert recorded["headers"]["authorization"] == f"Bearer {KEY}"
    assert recorded["api_key"] == KEY


async def test_async_completion_with_content_parts(fake: FakeProvider) -> None:
    parts = [{"type": "text", "text": "first part"}, {"type": "text", "text": "second"}]
    async with openai.AsyncOpenAI(base_url=fake.base_url, api_key=KEY, max_retries=0) as sdk:
        result = await sdk.chat.completions.create(model="m", messages=[{"role": "user", "content": parts}])
    assert result.choices[0].message.content == "fake answer to: first part second"


def test_sync_stream_chunks_and_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="m", messages=USER_HI, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)

    assert all(c.object == "chat.completion.chunk" and c.model == "m" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    content = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content) > 2
    assert "".join(content) == "fake answer to: hello there"
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage.total_tokens == 7


async def test_async_stream_without_usage(fake: FakeProvider) -> None:
    async with openai.AsyncOpenAI(base_url=fake.base_url, api_key=KEY, max_retries=0) as sdk:
        stream = await sdk.chat.completions.create(model="m", messages=USER_HI, stream=True)
        chunks = [chunk async for chunk in stream]
    assert all(c.usage is None and c.choices for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "fake answer to: hello there"
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_stream_is_flushed_chunk_by_chunk(fake: FakeProvider, client: openai.OpenAI) -> None:
    fake.set_behavior(chunk_delay_ms=60)
    started = time.monotonic()
    stream = client.chat.completions.create(model="m", messages=USER_HI, stream=True)
    arrivals = [time.monotonic() - started for _ in stream]
    assert arrivals[-1] >= 0.3
    assert arrivals[-1] - arrivals[0] >= 0.25  # the first chunk did not wait for the last


def test_name_rule_reads_any_role(client: openai.OpenAI) -> None:
    messages = [
        {"role": "system", "content": "Known facts: the user said 'my name is alice'."},
        {"role": "user", "content": "Hi!"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": [{"type": "text", "text": "What is my name?"}]},
    ]
    result = client.chat.completions.create(model="m", messages=messages)
    assert result.choices[0].message.content == "Your name is Alice."

    forgotten = client.chat.completions.create(model="m", messages=messages[-1:])
    assert forgotten.choices[0].message.content == "fake answer to: What is my name?"


TOOLS = [
    {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}},
    {"type": "function", "function": {"name": "other", "parameters": {"type": "object", "properties": {}}}},
]


def test_tool_call_then_text_after_tool_result(client: openai.OpenAI) -> None:
    first = client.chat.completions.create(model="m", messages=USER_HI, tools=TOOLS)
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls
    assert (call.type, call.function.name, call.function.arguments) == ("function", "lookup", "{}")

    follow_up = [
        *USER_HI,
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "42"},
    ]
    second = client.chat.completions.create(model="m", messages=follow_up, tools=TOOLS)
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content == "fake answer to: hello there"


def test_tool_call_streams_in_openai_chunk_format(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(model="m", messages=USER_HI, tools=TOOLS, stream=True))
    deltas = [c.choices[0].delta.tool_calls[0] for c in chunks if c.choices[0].delta.tool_calls]
    assert deltas[0].id.startswith("call_") and deltas[0].function.name == "lookup"
    assert "".join(d.function.arguments or "" for d in deltas) == "{}"
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_fail_status_maps_to_sdk_error(fake: FakeProvider, client: openai.OpenAI) -> None:
    fake.set_behavior(fail_status=503)
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="m", messages=USER_HI)
    assert isinstance(caught.value, openai.APIStatusError)
    assert caught.value.status_code == 503
    assert caught.value.body["code"] == "fake_failure"
    with pytest.raises(openai.APIStatusError):  # keeps failing without fail_times
        client.chat.completions.create(model="m", messages=USER_HI, stream=True)


def test_fail_times_fails_then_recovers(fake: FakeProvider, client: openai.OpenAI) -> None:
    fake.set_behavior(fail_status=429, fail_times=2)
    for _ in range(2):
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(model="m", messages=USER_HI)
    assert client.chat.completions.create(model="m", messages=USER_HI).choices[0].message.content
    assert len(fake.requests) == 3  # failed attempts are recorded too


def test_sdk_retries_succeed_after_fail_times(fake: FakeProvider) -> None:
    fake.set_behavior(fail_status=500, fail_times=1)
    with openai.OpenAI(base_url=fake.base_url, api_key=KEY, max_retries=1) as sdk:
        result = sdk.chat.completions.create(model="m", messages=USER_HI)
    assert result.choices[0].message.content == "fake answer to: hello there"
    assert len(fake.requests) == 2


def test_delay_and_fixed_reply(fake: FakeProvider, client: openai.OpenAI) -> None:
    fake.set_behavior(delay_ms=200, reply="fixed words here")
    started = time.monotonic()
    result = client.chat.completions.create(model="m", messages=USER_HI)
    assert time.monotonic() - started >= 0.2
    assert result.choices[0].message.content == "fixed words here"

    fake.reset()
    assert fake.behavior.delay_ms == 0
    result = client.chat.completions.create(model="m", messages=USER_HI)
    assert result.choices[0].message.content == "fake answer to: hello there"


def test_missing_key_is_401_and_bad_body_is_400(fake: FakeProvider) -> None:
    body = {"model": "m", "messages": USER_HI}
    missing = httpx.post(fake.base_url + "/chat/completions", json=body)
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "invalid_api_key"
    assert fake.requests[-1]["api_key"] is None

    bad = httpx.post(fake.base_url + "/chat/completions", json={"model": "m"}, headers={"Authorization": "Bearer x"})
    assert bad.status_code == 400
    assert set(bad.json()["error"]) == {"message", "type", "param", "code"}


def test_expected_key_rejects_other_keys() -> None:
    with FakeProvider(expected_key="sk-right") as strict:
        with openai.OpenAI(base_url=strict.base_url, api_key="sk-wrong", max_retries=0) as sdk:
            with pytest.raises(openai.AuthenticationError):
                sdk.chat.completions.create(model="m", messages=USER_HI)
        with openai.OpenAI(base_url=strict.base_url, api_key="sk-right", max_retries=0) as sdk:
            assert sdk.chat.completions.create(model="m", messages=USER_HI).choices
        assert [r["api_key"] for r in strict.requests] == ["sk-wrong", "sk-right"]


def test_models_list(client: openai.OpenAI) -> None:
    assert "fake-model" in [model.id for model in client.models.list()]


def test_fast_mode_answers_without_recording() -> None:
    with FakeProvider(fast=True) as quick:
        with openai.OpenAI(base_url=quick.base_url, api_key=KEY, max_retries=0) as sdk:
            result = sdk.chat.completions.create(model="bench", messages=USER_HI)
            stream = sdk.chat.completions.create(
                model="bench", messages=USER_HI, stream=True, stream_options={"include_usage": True}
            )
            chunks = list(stream)
        assert (result.model, result.choices[0].message.content) == ("bench", "ok")
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "ok"
        assert chunks[-1].usage.total_tokens == 2
        assert quick.requests == []


def test_behavior_rejects_unknown_fields(fake: FakeProvider) -> None:
    import msgspec

    with pytest.raises(msgspec.ValidationError):
        fake.set_behavior(delay=5)
    response = httpx.post(fake.url + "/_fake/behavior", json={"fail_status": "soon"})
    assert response.status_code == 400


def test_stop_cuts_pending_delays_short() -> None:
    provider = FakeProvider(behavior=Behavior(delay_ms=10_000)).start()
    outcome: list[object] = []

    def call() -> None:
        with openai.OpenAI(base_url=provider.base_url, api_key=KEY, max_retries=0) as sdk:
            outcome.append(sdk.chat.completions.create(model="m", messages=USER_HI).choices[0].message.content)

    caller = threading.Thread(target=call)
    caller.start()
    wait_for(lambda: provider.requests)  # the call is in the fake, inside its 10 s delay
    provider.stop()
    caller.join(8)
    assert outcome == ["fake answer to: hello there"]  # answered: the delay was cut short


def test_process_provider_over_control_api() -> None:
    started = time.monotonic()
    with FakeProviderProcess(expected_key=KEY) as proc:
        assert time.monotonic() - started < 3.0  # about 0.2 s; slack for loaded CI machines
        with openai.OpenAI(base_url=proc.base_url, api_key=KEY, max_retries=0) as sdk:
            stream = sdk.chat.completions.create(
                model="m", messages=USER_HI, stream=True, stream_options={"include_usage": True}
            )
            assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == (
                "fake answer to: hello there"
            )
            [recorded] = proc.requests()
            assert recorded["body"]["stream"] is True and recorded["api_key"] == KEY

            assert proc.set_behavior(fail_status=503, fail_times=1)["fail_times"] == 1
            with pytest.raises(openai.InternalServerError):
                sdk.chat.completions.create(model="m", messages=USER_HI)
            assert sdk.chat.completions.create(model="m", messages=USER_HI).choices

            proc.reset()
            assert proc.requests() == []
        pid = proc.pid
    assert pid is not None and proc.pid is None  # stopped and cleaned up
