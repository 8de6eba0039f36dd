"""The official `openai` Python SDK against `memgate up`: what test_quickstart.py leaves out.

Async streaming, and the x-memory* response headers as the SDK exposes them
(`with_raw_response`, `with_streaming_response`), for sync and async clients.
"""

from __future__ import annotations

import uuid
from typing import Any

import openai
import pytest

from memgate_testing.fake_provider import FakeProvider
from memgate_testing.gateway import GatewayProcess

MODEL = "fake/gpt-test"
QUESTION = "What is my name?"


def _memory(prefix: str) -> dict[str, str]:
    """Fresh thread and resource ids, so no other test's memory can answer for this one."""
    tag = uuid.uuid4().hex[:10]
    return {"x-thread-id": f"{prefix}-{tag}", "x-resource-id": f"user-{tag}"}


def _user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def assert_memory_block(request: dict[str, Any], remembered: str) -> None:
    """The provider's request starts with memgate's memory block, which carries `remembered`."""
    first = request["body"]["messages"][0]
    assert first["role"] == "system", request["body"]["messages"]
    assert first["content"].startswith("<memgate_memory>")
    assert first["content"].rstrip().endswith("</memgate_memory>")
    assert remembered in first["content"]


def assert_memory_headers(headers: Any, *, injected: bool) -> None:
    assert headers["x-memory"] == ("injected" if injected else "empty")
    assert headers["x-memory-degraded"] == "false"
    assert "x-memory-degraded-reason" not in headers
    assert float(headers["x-memory-lookup-ms"]) >= 0
    observations, messages, tokens = (int(headers[f"x-memory-{n}"]) for n in ("observations", "messages", "tokens"))
    if injected:
        assert messages + observations >= 1 and tokens > 0
    else:
        assert (observations, messages, tokens) == (0, 0, 0)


def test_sync_raw_response_memory_headers(gateway: GatewayProcess, provider: FakeProvider) -> None:
    client = openai.OpenAI(base_url=gateway.base_url, api_key=gateway.api_key, max_retries=0)
    memory = _memory("py-raw")
    statement = "My name is Brigitte and I live in Lyon."

    first = client.chat.completions.with_raw_response.create(model=MODEL, messages=_user(statement),
                                                             extra_headers=memory)
    assert first.status_code == 200
    assert_memory_headers(first.headers, injected=False)  # a new thread: nothing to remember yet
    assert first.parse().choices[0].message.content == f"fake answer to: {statement}"

    second = client.chat.completions.with_raw_response.create(model=MODEL, messages=_user(QUESTION),
                                                              extra_headers=memory)
    assert_memory_headers(second.headers, injected=True)
    assert second.parse().choices[0].message.content == "Your name is Brigitte."
    assert provider.requests[0]["body"]["messages"] == _user(statement)
    assert_memory_block(provider.requests[1], statement)
    assert provider.requests[1]["body"]["messages"][1:] == _user(QUESTION)


def test_sync_streaming_response_memory_headers(gateway: GatewayProcess, provider: FakeProvider) -> None:
    client = openai.OpenAI(base_url=gateway.base_url, api_key=gateway.api_key, max_retries=0)
    memory = _memory("py-stream-raw")
    statement = "My name is Casimir, I collect stamps."

    with client.chat.completions.with_streaming_response.create(
        model=MODEL, messages=_user(statement), stream=True, extra_headers=memory
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        assert_memory_headers(response.headers, injected=False)
        text = "".join(c.choices[0].delta.content or "" for c in response.parse() if c.choices)
    assert text == f"fake answer to: {statement}"

    with client.chat.completions.with_streaming_response.create(
        model=MODEL, messages=_user(QUESTION), stream=True, extra_headers=memory
    ) as response:
        assert_memory_headers(response.headers, injected=True)
        pieces = [c.choices[0].delta.content or "" for c in response.parse() if c.choices]
    assert len([p for p in pieces if p]) > 1
    assert "".join(pieces) == "Your name is Casimir."
    assert_memory_block(provider.requests[1], statement)


async def test_async_streaming_remembers(gateway: GatewayProcess, provider: FakeProvider) -> None:
    memory = _memory("py-async-stream")
    statement = "My name is Dagny and I prefer short answers."
    async with openai.AsyncOpenAI(base_url=gateway.base_url, api_key=gateway.api_key, max_retries=0) as client:
        stream = await client.chat.completions.create(model=MODEL, messages=_user(statement), stream=True,
                                                      extra_headers=memory)
        first = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert first == f"fake answer to: {statement}"

        stream = await client.chat.completions.create(
            model=MODEL, messages=_user(QUESTION), stream=True, stream_options={"include_usage": True},
            extra_headers=memory,
        )
        pieces, finish, usage = [], None, None
        async for chunk in stream:
            if chunk.choices:
                pieces.append(chunk.choices[0].delta.content or "")
                finish = chunk.choices[0].finish_reason or finish
            usage = chunk.usage or usage
    assert len([p for p in pieces if p]) > 1  # relayed chunk by chunk
    assert "".join(pieces) == "Your name is Dagny."
    assert finish == "stop"
    assert usage is not None and usage.total_tokens > 0
    assert_memory_block(provider.requests[1], statement)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_async_raw_response_memory_headers(gateway: GatewayProcess, provider: FakeProvider,
                                                 stream: bool) -> None:
    memory = _memory("py-async-raw")
    statement = "My name is Eero; I work nights."
    async with openai.AsyncOpenAI(base_url=gateway.base_url, api_key=gateway.api_key, max_retries=0) as client:

        async def ask(text: str) -> tuple[Any, str]:
            raw = await client.chat.completions.with_raw_response.create(
                model=MODEL, messages=_user(text), stream=stream, extra_headers=memory
            )
            parsed = raw.parse()  # the legacy raw response parses synchronously, also in async
            if stream:
                return raw.headers, "".join([c.choices[0].delta.content or "" async for c in parsed if c.choices])
            return raw.headers, parsed.choices[0].message.content

        headers, answer = await ask(statement)
        assert_memory_headers(headers, injected=False)
        assert answer == f"fake answer to: {statement}"
        headers, answer = await ask(QUESTION)
        assert_memory_headers(headers, injected=True)
        assert answer == "Your name is Eero."
    assert_memory_block(provider.requests[1], statement)
    assert provider.requests[1]["body"]["stream"] is stream
