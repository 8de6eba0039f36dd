"""A client that disconnects mid-stream: the upstream request is cancelled and the partial
exchange is still recorded, marked as interrupted."""

from __future__ import annotations

import uuid

import httpx

from helpers import wait_for
from memgate_testing.fake_provider import FakeProvider
from memgate_testing.gateway import GatewayProcess

LONG_REPLY = " ".join(f"word{i}" for i in range(60))


def test_disconnect_cancels_upstream_and_records_partial_answer(gateway: GatewayProcess, provider: FakeProvider) -> None:
    provider.set_behavior(reply=LONG_REPLY, chunk_delay_ms=50)
    thread = f"disconnect-{uuid.uuid4().hex[:6]}"
    headers = {**gateway.headers(), "x-thread-id": thread, "x-resource-id": "user-dc"}
    body = {"model": "fake/gpt-test", "stream": True, "messages": [{"role": "user", "content": "Tell me a long story."}]}
    received = []
    with httpx.Client(timeout=30) as client, client.stream("POST", f"{gateway.base_url}/chat/completions",
                                                           headers=headers, json=body) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: {"):
                received.append(line)
            if len(received) >= 4:
                break  # leave mid-stream: closing the client drops the connection
    assert wait_for(lambda: provider.stream_outcomes, timeout=10) == ["client_disconnected"]

    def interrupted_answer() -> dict | None:
        r = httpx.get(f"{gateway.base_url}/memory/threads/{thread}/messages", headers=gateway.headers())
        if r.status_code != 200:
            return None
        answers = [m for m in r.json()["data"] if m["role"] == "assistant"]
        return answers[0] if answers else None

    answer = wait_for(interrupted_answer, timeout=10)
    assert answer["interrupted"] is True
    assert answer["content"].startswith("word0")
    assert len(answer["content"]) < len(LONG_REPLY)


def test_complete_stream_is_not_interrupted(gateway: GatewayProcess, provider: FakeProvider) -> None:
    thread = f"complete-{uuid.uuid4().hex[:6]}"
    headers = {**gateway.headers(), "x-thread-id": thread, "x-resource-id": "user-dc"}
    body = {"model": "fake/gpt-test", "stream": True, "messages": [{"role": "user", "content": "Hi there friend."}]}
    with httpx.stream("POST", f"{gateway.base_url}/chat/completions", headers=headers, json=body, timeout=30) as r:
        lines = [line for line in r.iter_lines() if line.startswith("data:")]
    assert lines[-1] == "data: [DONE]"
    assert provider.stream_outcomes == ["completed"]
    messages = httpx.get(f"{gateway.base_url}/memory/threads/{thread}/messages", headers=gateway.headers()).json()
    assert [m["interrupted"] for m in messages["data"]] == [False, False]
