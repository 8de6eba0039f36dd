"""Small helpers the end-to-end tests share."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from memgate_testing.gateway import GatewayProcess


def memory_text(request: dict[str, Any]) -> str:
    """Everything the provider received in one request's messages, as one string."""
    parts = []
    for message in request["body"]["messages"]:
        content = message.get("content")
        parts.append(content if isinstance(content, str) else str(content))
    return "\n".join(parts)


def wait_for(condition: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


def observations(gateway: GatewayProcess, thread_id: str, key: str | None = None) -> list[dict[str, Any]]:
    r = httpx.get(f"{gateway.base_url}/memory/threads/{thread_id}/observations", headers=gateway.headers(key))
    if r.status_code == 404:
        return []  # not written yet
    r.raise_for_status()
    return r.json()["data"]


def assert_memory_reached_provider(requests: list[dict[str, Any]], statement: str, question: str,
                                   stream: bool) -> None:
    """Turn 1 (`statement`) went out bare; turn 2 (`question`) carried it in a memory block first."""
    assert len(requests) == 2
    assert requests[0]["body"]["messages"] == [{"role": "user", "content": statement}]
    system, *rest = requests[1]["body"]["messages"]
    assert system["role"] == "system" and system["content"].startswith("<memgate_memory>")
    assert statement in system["content"]
    assert rest == [{"role": "user", "content": question}]
    assert requests[1]["body"].get("stream", False) is stream
