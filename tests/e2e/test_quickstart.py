"""The README quickstart through the official openai SDK against `memgate up`."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import openai
import pytest
from helpers import memory_text

from memgate_testing.fake_provider import FakeProvider
from memgate_testing.gateway import GatewayProcess

TURN_1 = "My name is Alex and I prefer concise answers."
TURN_2 = "What is my name?"



@pytest.fixture(scope="module")
def gateway(shaped_gateway: GatewayProcess) -> GatewayProcess:
    """Every test here runs against `memgate up` and against the split services."""
    return shaped_gateway

def _headers(thread: str, resource: str = "user-42") -> dict[str, str]:
    return {"x-thread-id": thread, "x-resource-id": resource}


def test_second_turn_remembers_the_first(gateway: GatewayProcess, provider: FakeProvider) -> None:
    client = openai.OpenAI(base_url=gateway.base_url, api_key=gateway.api_key, max_retries=0)
    thread = f"quickstart-{uuid.uuid4().hex[:8]}"

    first = client.chat.completions.create(
        model="fake/gpt-test", messages=[{"role": "user", "content": TURN_1}], extra_headers=_headers(thread)
    )
    assert first.choices[0].message.content
    raw = client.chat.completions.with_raw_response.create(
        model="fake/gpt-test", messages=[{"role": "user", "content": TURN_2}], extra_headers=_headers(thread)
    )
    second = raw.parse()

    upstream = provider.requests
    assert len(upstream) == 2
    assert upstream[1]["body"]["model"] == "gpt-test"  # the provider prefix is removed
    assert TURN_1 in memory_text(upstream[1])
    assert upstream[0]["body"]["messages"] == [{"role": "user", "content": TURN_1}]  # nothing to remember yet
    assert upstream[1]["body"]["messages"][0]["role"] == "system"
    assert upstream[1]["body"]["messages"][-1] == {"role": "user", "content": TURN_2}
    assert second.choices[0].message.content == "Your name is Alex."
    assert raw.headers["x-memory"] == "injected"
    assert int(raw.headers["x-memory-tokens"]) > 0
    assert raw.headers["x-memory-degraded"] == "false"


def test_streaming_second_turn_remembers_the_first(gateway: GatewayProcess, provider: FakeProvider) -> None:
    client = openai.OpenAI(base_url=gateway.base_url, api_key=gateway.api_key, max_retries=0)
    thread = f"quickstart-stream-{uuid.uuid4().hex[:8]}"

    chunks = client.chat.completions.create(
        model="fake/gpt-test", messages=[{"role": "user", "content": TURN_1}], stream=True,
        extra_headers=_headers(thread),
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    stream = client.chat.completions.create(
        model="fake/gpt-test", messages=[{"role": "user", "content": TURN_2}], stream=True,
        stream_options={"include_usage": True}, extra_headers=_headers(thread),
    )
    pieces, usage = [], None
    for chunk in stream:
        if chunk.choices:
            pieces.append(chunk.choices[0].delta.content or "")
        if chunk.usage:
            usage = chunk.usage
    assert len([p for p in pieces if p]) > 1  # relayed chunk by chunk, not as one blob
    assert "".join(pieces) == "Your name is Alex."
    assert usage is not None and usage.total_tokens > 0
    assert TURN_1 in memory_text(provider.requests[1])


@pytest.mark.asyncio
async def test_async_client_remembers(gateway: GatewayProcess, provider: FakeProvider) -> None:
    client = openai.AsyncOpenAI(base_url=gateway.base_url, api_key=gateway.api_key, max_retries=0)
    thread = f"quickstart-async-{uuid.uuid4().hex[:8]}"
    await client.chat.completions.create(
        model="fake/gpt-test", messages=[{"role": "user", "content": TURN_1}], extra_headers=_headers(thread)
    )
    answer = await client.chat.completions.create(
        model="fake/gpt-test", messages=[{"role": "user", "content": TURN_2}], extra_headers=_headers(thread)
    )
    assert answer.choices[0].message.content == "Your name is Alex."
    await client.close()


def test_without_memory_headers_nothing_is_injected_or_stored(gateway: GatewayProcess, provider: FakeProvider) -> None:
    client = openai.OpenAI(base_url=gateway.base_url, api_key=gateway.api_key, max_retries=0)
    text = f"{TURN_1} ({uuid.uuid4().hex})"
    raw = client.chat.completions.with_raw_response.create(
        model="fake/gpt-test", messages=[{"role": "user", "content": text}]
    )
    assert raw.headers["x-memory"] == "off"
    assert provider.requests[0]["body"]["messages"] == [{"role": "user", "content": text}]

    async def stored() -> int:
        db = await asyncpg.connect(gateway.runtime()["database_url"])
        try:
            return int(await db.fetchval("SELECT count(*) FROM messages WHERE content = $1", text))
        finally:
            await db.close()

    assert asyncio.run(stored()) == 0  # (a turn is stored with its outbox row, in one transaction)
