"""Fields memgate does not own reach the provider untouched; the provider's answer comes back unchanged.

memgate owns two things in a chat request body: `model` (the `provider/` prefix is removed,
aliases resolved) and `messages` (a memory system message may be prepended). Everything else,
including fields that do not exist yet, must be forwarded as sent, with memory on.
"""

from __future__ import annotations

import copy
import json
import uuid
from typing import Any

import httpx
import openai
import pytest
from helpers import observations, wait_for

from memgate_testing.fake_provider import FakeProvider
from memgate_testing.gateway import GatewayProcess

PNG_DATA_URL = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
WAV_BASE64 = "UklGRiQAAABXQVZFZm10IBAAAAABAAEAQB8AAIA+AAACABAAZGF0YQAAAAA="

TOOLS = [{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                       "additionalProperties": False},
        "strict": True,
    },
}]

RESPONSE_FORMAT = {
    "type": "json_schema",
    "json_schema": {
        "name": "person",
        "strict": True,
        "schema": {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
                   "required": ["name", "age"], "additionalProperties": False},
    },
}

# Every field memgate does not own, with non-default values (a None or a default could hide a drop).
EXTRA_FIELDS: dict[str, Any] = {
    "tools": TOOLS,
    "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
    "parallel_tool_calls": False,
    "response_format": RESPONSE_FORMAT,
    "n": 2,
    "seed": 1234567,
    "logprobs": True,
    "top_logprobs": 3,
    "stop": ["\n\nEND", "STOP"],
    "max_tokens": 77,
    "max_completion_tokens": 88,
    "temperature": 0.37,
    "top_p": 0.9,
    "presence_penalty": 0.25,
    "frequency_penalty": -0.5,
    "logit_bias": {"50256": -100},
    "user": "end-user-1234",
    "metadata": {"team": "ml", "run": "42"},
    "store": False,
    "x_future": {"a": [1, 2]},
    "x_future_scalar": None,
}

MULTIMODAL_USER = {
    "role": "user",
    "content": [
        {"type": "text", "text": "What is in this picture and this sound?"},
        {"type": "image_url", "image_url": {"url": PNG_DATA_URL, "detail": "low"}},
        {"type": "input_audio", "input_audio": {"data": WAV_BASE64, "format": "wav"}},
    ],
}


def _memory_ids(prefix: str) -> dict[str, str]:
    return {"x-thread-id": f"{prefix}-{uuid.uuid4().hex[:8]}", "x-resource-id": f"res-{uuid.uuid4().hex[:8]}"}


def _post(gateway: GatewayProcess, body: dict[str, Any], headers: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{gateway.base_url}/chat/completions", headers={**gateway.headers(), **headers},
                      content=json.dumps(body).encode(), timeout=30)


def _assert_forwarded(sent: dict[str, Any], received: dict[str, Any], *, memory_expected: bool) -> None:
    """`received` is `sent` except the model's prefix, and maybe one prepended memory system message."""
    assert received["model"] == sent["model"].removeprefix("fake/")
    client_messages = sent["messages"]
    if memory_expected:
        first = received["messages"][0]
        assert first["role"] == "system" and isinstance(first["content"], str) and first["content"]
        assert received["messages"][1:] == client_messages
    else:
        assert received["messages"] == client_messages
    rest_sent = {k: v for k, v in sent.items() if k not in ("model", "messages")}
    rest_received = {k: v for k, v in received.items() if k not in ("model", "messages")}
    assert rest_received == rest_sent
    # Types are kept too (an int must not come back a float, false must not become null...).
    for key, value in rest_sent.items():
        assert type(rest_received[key]) is type(value), key


def _seed_memory(gateway: GatewayProcess, ids: dict[str, str]) -> None:
    """A first exchange in the thread, so the next request gets a memory block."""
    first = _post(gateway, {"model": "fake/gpt-test",
                            "messages": [{"role": "user", "content": "My name is Quentin and I like puffins."}]}, ids)
    assert first.status_code == 200, first.text


@pytest.mark.parametrize("with_memory", [False, True], ids=["memory-empty", "memory-injected"])
def test_every_unowned_field_reaches_provider(gateway: GatewayProcess, provider: FakeProvider,
                                              with_memory: bool) -> None:
    ids = _memory_ids("pass")
    if with_memory:
        _seed_memory(gateway, ids)
    sent = {
        "model": "fake/gpt-test",
        "messages": [
            {"role": "system", "content": "You are terse."},
            MULTIMODAL_USER,
            {"role": "assistant", "content": "A pixel and silence.", "name": "helper"},
            {"role": "user", "content": "Thanks. Now call the tool."},
        ],
        **copy.deepcopy(EXTRA_FIELDS),
    }
    before = len(provider.requests)
    response = _post(gateway, sent, ids)
    assert response.status_code == 200, response.text
    assert response.headers["x-memory"] == ("injected" if with_memory else "empty")
    assert response.headers["x-memgate-route"] == "fake/gpt-test"
    for header in ("x-memory-observations", "x-memory-messages", "x-memory-tokens", "x-memory-lookup-ms"):
        assert header in response.headers
    assert len(provider.requests) == before + 1
    recorded = provider.requests[-1]
    assert recorded["api_key"] == "fake-provider-key"
    _assert_forwarded(sent, recorded["body"], memory_expected=with_memory)
    if with_memory:
        assert "Quentin" in recorded["body"]["messages"][0]["content"]


def test_multimodal_parts_survive_memory(gateway: GatewayProcess, provider: FakeProvider) -> None:
    """The image and audio parts of a remembered turn are not rewritten, neither now nor in the next request."""
    ids = _memory_ids("media")
    sent = {"model": "fake/gpt-test", "messages": [MULTIMODAL_USER], "x_future": {"a": [1, 2]}}
    response = _post(gateway, sent, ids)
    assert response.status_code == 200, response.text
    _assert_forwarded(sent, provider.requests[-1]["body"], memory_expected=False)
    follow_up = {"model": "fake/gpt-test", "messages": [{"role": "user", "content": "And now?"}]}
    assert _post(gateway, follow_up, ids).headers["x-memory"] == "injected"
    _assert_forwarded(follow_up, provider.requests[-1]["body"], memory_expected=True)


def test_streaming_fields_and_usage_chunk(gateway: GatewayProcess, provider: FakeProvider) -> None:
    ids = _memory_ids("stream")
    _seed_memory(gateway, ids)
    provider.set_behavior(reply="Streaming answer from the fake.")
    sent = {
        "model": "fake/gpt-test",
        "messages": [{"role": "user", "content": "Tell me something."}],
        "stream": True,
        "stream_options": {"include_usage": True},
        "seed": 7, "temperature": 0, "stop": "\n", "max_completion_tokens": 50, "n": 1,
        "user": "u-9", "metadata": {"k": "v"}, "x_future": {"a": [1, 2]},
    }
    with httpx.stream("POST", f"{gateway.base_url}/chat/completions", headers={**gateway.headers(), **ids},
                      content=json.dumps(sent).encode(), timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-memory"] == "injected"
        assert response.headers["x-memgate-route"] == "fake/gpt-test"
        raw = b"".join(response.iter_raw())
    _assert_forwarded(sent, provider.requests[-1]["body"], memory_expected=True)

    events = [e for e in raw.decode().split("\n\n") if e.strip()]
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-1]]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) \
        == "Streaming answer from the fake."
    assert len({c["id"] for c in chunks}) == 1
    # The usage chunk the provider sent because of include_usage is relayed, untouched.
    usage_chunk = chunks[-1]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["completion_tokens"] == 5
    assert all(c["model"] == "gpt-test" and c["system_fingerprint"] == "fp_fake" for c in chunks)


def test_answer_is_relayed_byte_for_byte(gateway: GatewayProcess, provider: FakeProvider) -> None:
    """The gateway's body is exactly the provider's body: compare it with a direct call to the fake."""
    ids = _memory_ids("bytes")
    provider.set_behavior(reply="A fixed answer, with ünïcödé and \"quotes\".")
    body = {"model": "fake/gpt-test", "messages": [{"role": "user", "content": "hi"}], "seed": 3}
    via_gateway = _post(gateway, body, ids)
    assert via_gateway.status_code == 200, via_gateway.text
    direct = httpx.post(f"{provider.base_url}/chat/completions", headers={"Authorization": "Bearer direct"},
                        json={**body, "model": "gpt-test"}, timeout=10)
    assert direct.status_code == 200

    gateway_answer, direct_answer = via_gateway.json(), direct.json()
    # id and created differ per call; the rest, including key order and formatting, is identical.
    for volatile in ("id", "created"):
        assert type(gateway_answer.pop(volatile)) is type(direct_answer.pop(volatile))
    assert gateway_answer == direct_answer
    assert list(via_gateway.json()) == list(direct.json())
    assert gateway_answer["model"] == "gpt-test"
    assert gateway_answer["choices"][0]["message"]["content"] == "A fixed answer, with ünïcödé and \"quotes\"."
    assert gateway_answer["usage"] == {"prompt_tokens": 1, "completion_tokens": 7, "total_tokens": 8}
    assert via_gateway.headers["content-type"].startswith("application/json")
    # Byte-identical: the fake's bytes with only its per-call id and timestamp swapped in.
    expected = direct.content.replace(direct.json()["id"].encode(), via_gateway.json()["id"].encode())
    expected = expected.replace(b'"created":%d' % direct.json()["created"],
                                b'"created":%d' % via_gateway.json()["created"])
    assert via_gateway.content == expected
    assert via_gateway.headers["x-memory"] == "empty"
    assert via_gateway.headers["x-memgate-route"] == "fake/gpt-test"


def test_tool_call_answer_through_openai_sdk(gateway: GatewayProcess, provider: FakeProvider) -> None:
    ids = _memory_ids("sdk")
    client = openai.OpenAI(base_url=gateway.base_url, api_key=gateway.api_key, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="fake/gpt-test", extra_headers=ids,
        messages=[{"role": "user", "content": "Weather in Oslo?"}],
        tools=TOOLS, tool_choice="auto", seed=11, logprobs=True, top_logprobs=2,
        extra_body={"x_future": {"a": [1, 2]}},
    )
    completion = raw.parse()
    assert raw.headers["x-memory"] == "empty"
    assert completion.choices[0].finish_reason == "tool_calls"
    assert completion.choices[0].message.tool_calls[0].function.name == "get_weather"
    received = provider.requests[-1]["body"]
    assert received["tools"] == TOOLS
    assert received["tool_choice"] == "auto"
    assert (received["seed"], received["logprobs"], received["top_logprobs"]) == (11, True, 2)
    assert received["x_future"] == {"a": [1, 2]}
    assert received["messages"] == [{"role": "user", "content": "Weather in Oslo?"}]


def test_a_nul_character_is_forwarded_and_remembered(gateway: GatewayProcess, provider: FakeProvider) -> None:
    # Valid JSON that Postgres text cannot hold: the provider gets it untouched, memory keeps
    # U+FFFD in its place, and the exchange is observed like any other (it once failed forever).
    thread = f"nul-{uuid.uuid4().hex[:6]}"
    headers = {**gateway.headers(), "x-thread-id": thread, "x-resource-id": "user-nul"}
    for text in ("my locker code is 12\u000034", "and my bike is green"):
        body = {"model": "fake/gpt-test", "messages": [{"role": "user", "content": text}]}
        assert httpx.post(f"{gateway.base_url}/chat/completions", headers=headers, json=body).status_code == 200
    assert provider.requests[0]["body"]["messages"][-1]["content"] == "my locker code is 12\u000034"

    def remembered() -> list[str] | None:
        data = httpx.get(f"{gateway.base_url}/memory/threads/{thread}/messages", headers=gateway.headers()).json()
        contents = [m["content"] for m in data["data"] if m["role"] == "user"]
        return contents if len(contents) == 2 else None

    assert wait_for(remembered) == ["my locker code is 12\ufffd34", "and my bike is green"]

    def observed_both() -> list[str] | None:
        # The observer may take the two exchanges in one run or in two: wait for both, not the first.
        texts = [o["text"] for o in observations(gateway, thread)]
        return texts if any("bike" in t for t in texts) and any("locker" in t for t in texts) else None

    texts = wait_for(observed_both, timeout=15)
    assert any("12\ufffd34" in t for t in texts)
