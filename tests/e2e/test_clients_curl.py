"""Raw `curl` against `memgate up`: the README's curl quickstart, JSON and SSE (`-N`), headers via `-D -`."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from typing import Any

import pytest

from memgate_testing.fake_provider import FakeProvider
from memgate_testing.gateway import GatewayProcess

QUESTION = "What is my name?"


def curl(gateway: GatewayProcess, memory: dict[str, str], body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    """POST /v1/chat/completions with curl; returns (status, headers lower-cased, body bytes)."""
    exe = shutil.which("curl")
    if exe is None:
        pytest.skip("curl is not on PATH")
    argv = [exe, "-sS", "-N", "-D", "-", "--max-time", "30", f"{gateway.base_url}/chat/completions",
            "-H", f"Authorization: Bearer {gateway.api_key}", "-H", "content-type: application/json",
            "-H", f"x-thread-id: {memory['x-thread-id']}", "-H", f"x-resource-id: {memory['x-resource-id']}",
            "--data-binary", "@-"]
    done = subprocess.run(argv, input=json.dumps(body).encode(), capture_output=True, timeout=40)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    head, sep, payload = done.stdout.partition(b"\r\n\r\n")
    assert sep, done.stdout[:500]
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, payload


def sse_data(payload: bytes) -> list[str]:
    """The `data:` values of an SSE body, in order (one per event)."""
    text = payload.decode()
    events = [e for e in text.replace("\r\n", "\n").split("\n\n") if e.strip()]
    assert text.endswith("\n\n"), "the stream must end with a complete event"
    data = []
    for event in events:
        lines = [line[5:].lstrip() for line in event.split("\n") if line.startswith("data:")]
        assert lines, f"event without data: {event!r}"
        data.append("\n".join(lines))
    return data


def _assert_memory(headers: dict[str, str], *, injected: bool) -> None:
    assert headers["x-memory"] == ("injected" if injected else "empty")
    assert headers["x-memory-degraded"] == "false"
    tokens = int(headers["x-memory-tokens"])
    assert tokens > 0 if injected else tokens == 0
    for name in ("x-memory-observations", "x-memory-messages", "x-memory-lookup-ms"):
        assert name in headers


def _assert_provider_got_memory(provider: FakeProvider, statement: str) -> None:
    requests = provider.requests
    assert len(requests) == 2
    system, *rest = requests[1]["body"]["messages"]
    assert system["role"] == "system" and system["content"].startswith("<memgate_memory>")
    assert statement in system["content"]
    assert rest == [{"role": "user", "content": QUESTION}]


def _memory(prefix: str) -> dict[str, str]:
    tag = uuid.uuid4().hex[:10]
    return {"x-thread-id": f"{prefix}-{tag}", "x-resource-id": f"user-{tag}"}


def test_curl_json_remembers(gateway: GatewayProcess, provider: FakeProvider) -> None:
    memory = _memory("curl-json")
    statement = "My name is Joaquim and I prefer concise answers."

    for text, injected in ((statement, False), (QUESTION, True)):
        status, headers, payload = curl(gateway, memory, {"model": "fake/gpt-test",
                                                          "messages": [{"role": "user", "content": text}]})
        assert status == 200, payload
        assert headers["content-type"].startswith("application/json")
        _assert_memory(headers, injected=injected)
        answer = json.loads(payload)
    assert answer["object"] == "chat.completion"
    assert answer["choices"][0]["message"] == {"role": "assistant", "content": "Your name is Joaquim.",
                                               "refusal": None}
    assert answer["choices"][0]["finish_reason"] == "stop"
    _assert_provider_got_memory(provider, statement)


def test_curl_sse_remembers(gateway: GatewayProcess, provider: FakeProvider) -> None:
    memory = _memory("curl-sse")
    statement = "My name is Kalinda and I play the cello."

    for text, injected in ((statement, False), (QUESTION, True)):
        status, headers, payload = curl(gateway, memory, {
            "model": "fake/gpt-test", "stream": True, "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": text}],
        })
        assert status == 200, payload
        assert headers["content-type"].startswith("text/event-stream")
        _assert_memory(headers, injected=injected)
        data = sse_data(payload)
        assert data[-1] == "[DONE]"  # the last event, exactly once
        assert data.count("[DONE]") == 1
        chunks = [json.loads(d) for d in data[:-1]]
        assert all(c["object"] == "chat.completion.chunk" for c in chunks)
        assert len({c["id"] for c in chunks}) == 1
        content = "".join(ch["delta"].get("content") or "" for c in chunks for ch in c["choices"])
    assert content == "Your name is Kalinda."
    assert [ch["finish_reason"] for c in chunks for ch in c["choices"] if ch["finish_reason"]] == ["stop"]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0
    _assert_provider_got_memory(provider, statement)
