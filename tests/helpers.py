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
