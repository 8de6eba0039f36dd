"""Rate limits on every response, by scope, shared by edges on one Postgres.

Two `memgate up` processes on the same database (the second uses the first's Postgres) count
against the same buckets; a third, with MEMGATE_RATE_LIMITS=false, limits nobody.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from memgate_testing.fake_provider import FakeProvider
from memgate_testing.gateway import GatewayProcess

CHAT = {"model": "fake/x", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def second_edge(tmp_path_factory: pytest.TempPathFactory, gateway: GatewayProcess,
                fake_provider: FakeProvider) -> Iterator[GatewayProcess]:
    """Another `memgate up` on the first's Postgres."""
    process = GatewayProcess(tmp_path_factory.mktemp("edge-b") / "data", provider_url=fake_provider.base_url,
                             env={"MEMGATE_DATABASE_URL": gateway.runtime()["database_url"]})
    process.start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def unlimited_edge(tmp_path_factory: pytest.TempPathFactory, gateway: GatewayProcess,
                   fake_provider: FakeProvider) -> Iterator[GatewayProcess]:
    process = GatewayProcess(tmp_path_factory.mktemp("edge-off") / "data", provider_url=fake_provider.base_url,
                             env={"MEMGATE_DATABASE_URL": gateway.runtime()["database_url"],
                                  "MEMGATE_RATE_LIMITS": "false"})
    process.start()
    yield process
    process.stop()


def _key(gateway: GatewayProcess, *limits: str) -> str:
    created = gateway.memgate("keys", "create", "--tenant", f"rl-{uuid.uuid4().hex[:8]}", "--quiet", *limits)
    assert created.returncode == 0, created.stderr
    return created.stdout.strip()


def _limit(response: httpx.Response) -> tuple[str, int, int]:
    h = response.headers
    assert int(h["x-ratelimit-reset"]) >= 0
    return h["x-ratelimit-scope"], int(h["x-ratelimit-limit"]), int(h["x-ratelimit-remaining"])


def test_every_response_says_its_scopes_limit(gateway: GatewayProcess) -> None:
    key = _key(gateway)  # no limits of its own: the gateway's defaults
    with httpx.Client(base_url=gateway.base_url, headers=gateway.headers(key), timeout=30) as api:
        assert _limit(api.post("/chat/completions", json=CHAT))[:2] == ("chat", 6000)
        with api.stream("POST", "/chat/completions", json={**CHAT, "stream": True}) as stream:
            assert _limit(stream)[:2] == ("chat", 6000)
        assert _limit(api.get("/models"))[:2] == ("chat", 6000)
        assert _limit(api.get("/memory/threads"))[:2] == ("memory_read", 6000)
        missing = api.get("/memory/threads/nope")  # errors are answers too
        assert missing.status_code == 404 and _limit(missing)[:2] == ("memory_read", 6000)
        search = api.post("/memory/search", json={"resource_id": "r", "query": "anything"})
        assert _limit(search)[:2] == ("memory_write", 1200)


def test_each_scope_is_limited_on_its_own_across_edges(gateway: GatewayProcess, second_edge: GatewayProcess) -> None:
    key = _key(gateway, "--memory-write-rpm", "2", "--rpm", "3", "--burst", "3")
    a = httpx.Client(base_url=gateway.base_url, headers=gateway.headers(key), timeout=30)
    b = httpx.Client(base_url=second_edge.base_url, headers=gateway.headers(key), timeout=30)
    body = {"resource_id": "r", "query": "anything"}
    assert _limit(a.post("/memory/search", json=body)) == ("memory_write", 2, 1)
    assert _limit(b.post("/memory/search", json=body)) == ("memory_write", 2, 0)  # the other edge counts it
    denied = a.post("/memory/search", json=body)
    assert denied.status_code == 429
    error = denied.json()["error"]
    assert (error["type"], error["code"], error["scope"]) == ("rate_limit_error", "rate_limit_exceeded", "memory_write")
    assert error["retry_after_seconds"] == int(denied.headers["retry-after"]) >= 1
    assert "memory_write" in error["message"]

    # Chat and memory reads have buckets of their own: the writes' limit leaves them alone.
    assert [_limit(edge.post("/chat/completions", json=CHAT))[2] for edge in (a, b, a)] == [2, 1, 0]
    refused = b.post("/chat/completions", json=CHAT)
    assert refused.status_code == 429 and refused.json()["error"]["scope"] == "chat"
    assert a.get("/memory/threads").status_code == 200


def test_limits_can_be_turned_off(gateway: GatewayProcess, unlimited_edge: GatewayProcess) -> None:
    key = _key(gateway, "--rpm", "1", "--memory-read-rpm", "1")
    with httpx.Client(base_url=unlimited_edge.base_url, headers=gateway.headers(key), timeout=30) as api:
        for _ in range(3):
            for response in (api.post("/chat/completions", json=CHAT), api.get("/memory/threads")):
                assert response.status_code == 200
                assert not any(name.startswith("x-ratelimit") for name in response.headers)
