"""A follow-up sent the instant a response ends sees the previous exchange."""

from __future__ import annotations

import uuid

import httpx
import openai
import pytest
from helpers import memory_text

from memgate_testing.fake_provider import FakeProvider
from memgate_testing.gateway import GatewayProcess


@pytest.fixture(scope="module")
def gateway(shaped_gateway: GatewayProcess) -> GatewayProcess:
    """Every test here runs against `memgate up` and against the split services."""
    return shaped_gateway

@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_twenty_turns_back_to_back(gateway: GatewayProcess, provider: FakeProvider, stream: bool) -> None:
    client = openai.OpenAI(base_url=gateway.base_url, api_key=gateway.api_key, max_retries=0)
    headers = {"x-thread-id": f"ryw-{uuid.uuid4().hex[:8]}", "x-resource-id": "user-ryw"}
    facts = [f"Fact number {i}: the code word is {uuid.uuid4().hex[:10]}." for i in range(20)]
    for fact in facts:
        response = client.chat.completions.create(
            model="fake/gpt-test", messages=[{"role": "user", "content": fact}], extra_headers=headers, stream=stream
        )
        if stream:
            for _ in response:  # read to the end, then send the next turn at once
                pass
    upstream = provider.requests
    assert len(upstream) == 20
    for turn, request in enumerate(upstream):
        seen = memory_text(request)
        missing = [i for i in range(turn) if facts[i] not in seen]
        assert not missing, f"turn {turn}: upstream request lacks earlier turns {missing}"


def test_the_memory_api_shows_an_exchange_the_instant_its_response_ended(gateway: GatewayProcess) -> None:
    # `memgate up` stores after answering; the memory API must not be able to tell.
    client = openai.OpenAI(base_url=gateway.base_url, api_key=gateway.api_key, max_retries=0)
    thread = f"ryw-api-{uuid.uuid4().hex[:8]}"
    headers = {"x-thread-id": thread, "x-resource-id": "user-ryw"}
    with httpx.Client(base_url=gateway.base_url, headers=gateway.headers()) as api:
        for turn in range(10):
            client.chat.completions.create(model="fake/gpt-test", extra_headers=headers,
                                           messages=[{"role": "user", "content": f"turn {turn}"}])
            messages = api.get(f"/memory/threads/{thread}/messages").json()["data"]
            assert [m["content"] for m in messages if m["role"] == "user"] == [f"turn {i}" for i in range(turn + 1)]
            assert api.get(f"/memory/threads/{thread}").json()["message_count"] == 2 * (turn + 1)
