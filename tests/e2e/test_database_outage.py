"""Postgres gone under a running `memgate up`: requests that need it get a clear 503 (not a
500), and the log says so a few times, not once per request."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

import httpx
from helpers import wait_for

from memgate_testing.gateway import GatewayProcess


def test_requests_that_need_postgres_get_503_until_it_is_back(make_gateway: Callable[..., GatewayProcess]) -> None:
    gateway = make_gateway().start()
    fresh_key = gateway.memgate("keys", "create", "--tenant", "outage", "--quiet").stdout.strip()
    postmaster = int((gateway.data_dir / "postgres" / "postmaster.pid").read_text().split()[0])
    os.kill(postmaster, signal.SIGKILL)
    wait_for(lambda: not os.path.exists(f"/proc/{postmaster}"), timeout=10)

    # Until `memgate up` has started postgres again by itself: 503s, never a 500.
    failed: list[httpx.Response] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        listed = httpx.get(f"{gateway.base_url}/memory/threads", headers=gateway.headers(), timeout=30)
        chat = httpx.post(f"{gateway.base_url}/chat/completions", timeout=30,  # a key not seen yet: looked up
                          headers={"Authorization": f"Bearer {fresh_key}", "x-thread-id": "after-outage",
                                   "x-resource-id": "outage"},
                          json={"model": "fake/m", "messages": [{"role": "user", "content": "I keep bees."}]})
        failed += [r for r in (listed, chat) if r.status_code != 200]
        if listed.status_code == chat.status_code == 200:
            break
    else:
        raise AssertionError(f"chat did not come back by itself:\n{gateway.log()[-3000:]}")
    assert failed, "the outage went unnoticed: postgres came back before any request"
    for answer in failed:
        assert answer.status_code == 503, answer.text
        error = answer.json()["error"]
        assert (error["type"], error["code"]) == ("server_error", "database_unavailable")
        assert "database is unreachable" in error["message"] and answer.headers["retry-after"] == "5"
    log = gateway.log()
    assert "the embedded postgres stopped; restarting it" in log
    assert "Postgres unreachable" in log and log.count("Postgres unreachable") <= 3
    assert "unhandled error" not in log
    # What was answered after the outage is in memory.
    messages = httpx.get(f"{gateway.base_url}/memory/threads/after-outage/messages", timeout=30,
                         headers={"Authorization": f"Bearer {fresh_key}"}).json()["data"]
    assert messages and messages[0]["content"] == "I keep bees."
