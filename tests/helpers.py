"""Small helpers the end-to-end tests share."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx
import pytest

from memgate_testing.gateway import GatewayProcess

CI = os.environ.get("CI") == "true"


def unavailable(reason: str | None, *, ours: bool) -> pytest.MarkDecorator:
    """A module's mark for a missing prerequisite (`reason`; None: all there): skip, except
    under CI=true for one that `make test` installs itself (`ours`), which fails instead."""
    if reason is not None and ours and CI:
        pytest.fail(f"{reason}; under CI=true what `make test` installs must be there", pytrace=False)
    return pytest.mark.skipif(reason is not None, reason=reason or "")


def memory_text(request: dict[str, Any]) -> str:
    """Everything the provider received in one request's messages, as one string."""
    parts = []
    for message in request["body"]["messages"]:
        content = message.get("content")
        parts.append(content if isinstance(content, str) else str(content))
    return "\n".join(parts)


def assert_error(response: httpx.Response, status: int, error_type: str) -> dict[str, Any]:
    """The response is an OpenAI-shaped error of this status and type; returns its `error`."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["type"] == error_type
    assert isinstance(error["message"], str) and error["message"]
    return error


def wait_for(condition: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


def observer_idle(gateway: GatewayProcess, timeout: float = 30.0) -> None:
    """Until every exchange the gateway recorded is published (its outbox is empty) and the
    observer has handled and acknowledged all of them (its durable consumer has nothing
    pending): the moment a fixed sleep would only guess."""
    import asyncpg
    import nats

    from memgate_bus.subjects import EXCHANGE_STREAM, OBSERVER_DURABLE

    async def unfinished() -> int:
        runtime = gateway.runtime()
        db = await asyncpg.connect(runtime["database_url"])
        try:
            outbox = await db.fetchval("SELECT count(*) FROM outbox")
        finally:
            await db.close()
        client = await nats.connect(runtime["nats_url"])
        try:
            info = await client.jetstream().consumer_info(EXCHANGE_STREAM, OBSERVER_DURABLE)
            return outbox + info.num_pending + info.num_ack_pending
        finally:
            await client.close()

    wait_for(lambda: asyncio.run(unfinished()) == 0, timeout=timeout, interval=0.1)


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


async def backend_waiting_for_a_lock(db: Any, *, terminate: bool = False, besides: Sequence[int] = ()) -> int:
    """The pid of a Postgres backend waiting for a lock, polled for up to 10 s; `terminate`: then
    cut its connection. `besides`: pids to pass over (cut ones show until their backends exit).
    `db`: an asyncpg pool or connection (in a transaction too: each poll drops the snapshot
    of pg_stat_activity that a transaction would otherwise keep)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        await db.execute("SELECT pg_stat_clear_snapshot()")
        pid = await db.fetchval("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                                "AND wait_event_type = 'Lock' AND pid <> ALL($1::int[]) LIMIT 1", list(besides))
        if pid is not None:
            if terminate:
                await db.execute("SELECT pg_terminate_backend($1)", pid)
            return pid
        await asyncio.sleep(0.01)
    raise AssertionError("no backend waited for a lock")


def sse_events(raw: bytes) -> list[dict[str, Any]]:
    """The data of each `event: <type>` SSE event in `raw`, checked to repeat its type."""
    events = []
    for chunk in raw.split(b"\n\n"):
        if chunk.strip():
            kind = chunk.split(b"\n")[0].removeprefix(b"event: ").decode()
            data = json.loads(b"\n".join(line[5:].lstrip() for line in chunk.split(b"\n") if line.startswith(b"data:")))
            assert data["type"] == kind
            events.append(data)
    return events
