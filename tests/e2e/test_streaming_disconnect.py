"""A client that disconnects mid-stream: the upstream request is cancelled and the partial
exchange is still recorded, marked as interrupted."""

from __future__ import annotations

import json
import socket
import uuid
from urllib.parse import urlsplit

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


def test_disconnect_before_the_stream_starts_still_records_and_closes(
    gateway: GatewayProcess, provider: FakeProvider
) -> None:
    # The client is gone before the provider even answers: the response never starts
    # streaming, yet the upstream must be closed and the question remembered.
    provider.set_behavior(headers_delay_ms=3000, reply=LONG_REPLY, chunk_delay_ms=50)
    thread = f"early-{uuid.uuid4().hex[:6]}"
    body = json.dumps({"model": "fake/gpt-test", "stream": True,
                       "messages": [{"role": "user", "content": "Are you there?"}]}).encode()
    url = urlsplit(gateway.base_url)
    headers = {**gateway.headers(), "x-thread-id": thread, "x-resource-id": "user-dc",
               "content-type": "application/json", "content-length": str(len(body)), "host": url.netloc}
    request = f"POST {url.path}/chat/completions HTTP/1.1\r\n".encode() + b"".join(
        f"{k}: {v}\r\n".encode() for k, v in headers.items()) + b"\r\n" + body
    with socket.create_connection((url.hostname, url.port)) as client:
        client.sendall(request)
        wait_for(lambda: provider.requests)  # the gateway is waiting for the provider's headers now
    assert wait_for(lambda: provider.stream_outcomes, timeout=10) == ["client_disconnected"]

    def stored() -> list[dict] | None:
        r = httpx.get(f"{gateway.base_url}/memory/threads/{thread}/messages", headers=gateway.headers())
        return r.json()["data"] if r.status_code == 200 and len(r.json()["data"]) == 2 else None

    question, answer = wait_for(stored, timeout=10)
    assert (question["role"], question["content"], question["interrupted"]) == ("user", "Are you there?", False)
    assert (answer["role"], answer["content"], answer["interrupted"]) == ("assistant", "", True)


def test_complete_stream_is_not_interrupted(gateway: GatewayProcess, provider: FakeProvider) -> None:
    thread = f"complete-{uuid.uuid4().hex[:6]}"
    headers = {**gateway.headers(), "x-thread-id": thread, "x-resource-id": "user-dc"}
    body = {"model": "fake/gpt-test", "stream": True, "messages": [{"role": "user", "content": "Hi there friend."}]}
    with httpx.stream("POST", f"{gateway.base_url}/chat/completions", headers=headers, json=body, timeout=30) as r:
        lines = [line for line in r.iter_lines() if line.startswith("data:")]
    assert lines[-1] == "data: [DONE]"
    assert wait_for(lambda: provider.stream_outcomes) == ["completed"]  # recorded after its last send
    messages = httpx.get(f"{gateway.base_url}/memory/threads/{thread}/messages", headers=gateway.headers()).json()
    assert [m["interrupted"] for m in messages["data"]] == [False, False]
