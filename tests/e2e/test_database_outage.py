"""Postgres gone under a running `memgate up`: requests that need it get a clear 503 (not a
500), and the log says so a few times, not once per request."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

import httpx
from helpers import wait_for

from memgate_testing.gateway import GatewayProcess


def test_requests_that_need_postgres_get_503_while_it_is_gone(make_gateway: Callable[..., GatewayProcess]) -> None:
    gateway = make_gateway().start()
    fresh_key = gateway.memgate("keys", "create", "--tenant", "outage", "--quiet").stdout.strip()
    postmaster = int((gateway.data_dir / "postgres" / "postmaster.pid").read_text().split()[0])
    os.kill(postmaster, signal.SIGKILL)
    wait_for(lambda: not os.path.exists(f"/proc/{postmaster}"), timeout=10)

    answers = [httpx.get(f"{gateway.base_url}/memory/threads", headers=gateway.headers(), timeout=30)
               for _ in range(20)]
    answers.append(httpx.post(f"{gateway.base_url}/chat/completions", timeout=30,  # a key not seen yet: looked up
                              headers={"Authorization": f"Bearer {fresh_key}"},
                              json={"model": "fake/m", "messages": [{"role": "user", "content": "hi"}]}))
    for answer in answers:
        assert answer.status_code == 503, answer.text
        error = answer.json()["error"]
        assert (error["type"], error["code"]) == ("server_error", "database_unavailable")
        assert "database is unreachable" in error["message"] and answer.headers["retry-after"] == "5"
    log = gateway.log()
    assert "Postgres unreachable" in log and log.count("Postgres unreachable") <= 3
    assert "unhandled error" not in log
