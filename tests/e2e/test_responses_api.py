"""The official `openai` Python SDK's Responses API (`client.responses`) against `memgate up`.

Translated to chat completions for the provider and back; remembered like a chat completion,
streams included (the stream's `response.completed` comes once the exchange is stored).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import openai
import pytest

from memgate_testing.fake_provider import FakeProvider
from memgate_testing.gateway import GatewayProcess

MODEL = "fake/gpt-test"
TOOLS: list[Any] = [{"type": "function", "name": "get_weather", "description": "The weather in a city.",
                     "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]


@pytest.fixture()
def client(gateway: GatewayProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url, api_key=gateway.api_key, max_retries=0)


def _memory(prefix: str) -> dict[str, str]:
    tag = uuid.uuid4().hex[:10]
    return {"x-thread-id": f"{prefix}-{tag}", "x-resource-id": f"user-{tag}"}


def _sent(provider: FakeProvider) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = provider.requests[-1]["body"]["messages"]
    return messages


def test_the_second_response_knows_the_first(client: openai.OpenAI, provider: FakeProvider) -> None:
    memory = _memory("resp")
    first = client.responses.with_raw_response.create(model=MODEL, input="My name is Brigitte.", extra_headers=memory)
    assert first.headers["x-memory"] == "empty"
    assert first.parse().status == "completed" and first.parse().output_text

    second = client.responses.with_raw_response.create(
        model=MODEL, instructions="Answer briefly.", extra_headers=memory,
        input=[{"role": "user", "content": [{"type": "input_text", "text": "What is my name?"}]}])
    assert second.headers["x-memory"] == "injected"
    answer = second.parse()
    assert answer.output_text == "Your name is Brigitte."
    assert answer.id.startswith("resp_") and answer.model == MODEL and answer.instructions == "Answer briefly."
    assert answer.usage is not None and answer.usage.total_tokens == answer.usage.input_tokens + answer.usage.output_tokens
    sent = _sent(provider)  # the memory block first, then the instructions, then the input
    assert sent[0]["role"] == "system" and sent[0]["content"].startswith("<memgate_memory>")
    assert sent[1] == {"role": "system", "content": "Answer briefly."}
    assert sent[2] == {"role": "user", "content": [{"type": "text", "text": "What is my name?"}]}


def test_a_stream_is_remembered_before_it_completes(client: openai.OpenAI) -> None:
    memory = _memory("resp-stream")
    events = list(client.responses.create(model=MODEL, input="My name is Ines.", stream=True, extra_headers=memory))
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text and events[-1].response.output_text == text
    # Sent the instant the stream completed: read-your-writes holds for streams too.
    with client.responses.stream(model=MODEL, input="What is my name?", extra_headers=memory) as stream:
        assert "".join(e.delta for e in stream if e.type == "response.output_text.delta") == "Your name is Ines."
        assert stream.get_final_response().output_text == "Your name is Ines."


@pytest.mark.parametrize("stream", [False, True])
def test_function_calls_and_their_outputs(client: openai.OpenAI, provider: FakeProvider, stream: bool) -> None:
    memory = _memory("resp-tools")
    question: list[Any] = [{"role": "user", "content": "What is the weather in Oslo?"}]
    if stream:
        with client.responses.stream(model=MODEL, input=question, tools=TOOLS, extra_headers=memory) as events:
            called = events.get_final_response()
    else:
        called = client.responses.create(model=MODEL, input=question, tools=TOOLS, extra_headers=memory)
    call = next(item for item in called.output if item.type == "function_call")
    assert call.name == "get_weather" and call.status == "completed"
    json.loads(call.arguments or "{}")

    answer = client.responses.create(model=MODEL, tools=TOOLS, extra_headers=memory, input=[
        *question, {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "Sunny, 21 degrees."}])
    assert answer.output_text
    sent = _sent(provider)
    assert sent[-2]["tool_calls"][0]["id"] == call.call_id
    assert sent[-1] == {"role": "tool", "tool_call_id": call.call_id, "content": "Sunny, 21 degrees."}


@pytest.mark.parametrize(("extra", "param"), [
    ({"previous_response_id": "resp_123"}, "previous_response_id"),
    ({"tools": [{"type": "web_search"}]}, "tools[0]"),
    ({"input": []}, "input"),
    ({"input": [{"role": "robot", "content": "hi"}]}, "input[0].role"),
])
def test_what_memgate_cannot_do_is_refused_clearly(client: openai.OpenAI, provider: FakeProvider,
                                                   extra: dict[str, Any], param: str) -> None:
    with pytest.raises(openai.BadRequestError) as failed:
        client.responses.create(**{"model": MODEL, "input": "hello", **extra}, extra_headers=_memory("resp-bad"))
    body: Any = failed.value.body
    assert body["param"] == param and body["message"]
    assert provider.requests == []
    if param == "previous_response_id":
        assert "x-thread-id" in body["message"]
