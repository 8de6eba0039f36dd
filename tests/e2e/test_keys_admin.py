"""Keys through the admin API and the CLI, against a real `memgate up`: admin scope, revocation,
per-key rate limits (429 with Retry-After), the usage report."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from helpers import wait_for

from memgate_testing.fake_provider import FakeProvider
from memgate_testing.gateway import GatewayProcess

ADMIN_KEY = "msk_test_admin_key_for_memgate_tests_0001"


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, fake_provider: FakeProvider) -> Iterator[GatewayProcess]:
    process = GatewayProcess(tmp_path_factory.mktemp("keys-admin") / "data", provider_url=fake_provider.base_url,
                             env={"MEMGATE_ADMIN_KEY": ADMIN_KEY, "MEMGATE_AUTH_CACHE_SECONDS": "1"})
    process.start()
    yield process
    process.stop()


def _admin(gw: GatewayProcess, method: str, path: str, key: str = ADMIN_KEY, **kw: object) -> httpx.Response:
    return httpx.request(method, f"{gw.base_url}/admin{path}", headers=gw.headers(key), timeout=30, **kw)  # type: ignore[arg-type]


def _error(response: httpx.Response, status: int, error_type: str) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["type"] == error_type and error["message"]
    return error


def test_admin_creates_lists_and_revokes_keys(gw: GatewayProcess) -> None:
    created = _admin(gw, "POST", "/keys", json={"tenant": "acme", "name": "ci", "rpm": 120, "burst": 10})
    assert created.status_code == 201, created.text
    body = created.json()
    key = body["key"]
    assert key.startswith("msk_") and body["prefix"] == key[:10]
    assert (body["tenant"], body["name"], body["rpm"], body["burst"], body["admin"]) == ("acme", "ci", 120, 10, False)
    assert httpx.get(f"{gw.base_url}/models", headers=gw.headers(key)).status_code == 200

    listed = _admin(gw, "GET", "/keys", params={"tenant": "acme"}).json()["data"]
    assert [k["id"] for k in listed] == [body["id"]]
    assert "key" not in listed[0] and key not in json.dumps(listed)  # never the key again
    assert {"id", "prefix", "tenant", "name", "rpm", "burst", "admin", "created_at", "revoked_at"} <= set(listed[0])
    everyone = {k["tenant"] for k in _admin(gw, "GET", "/keys").json()["data"]}
    assert {"acme", "default"} <= everyone  # an admin key sees every tenant

    revoked = _admin(gw, "DELETE", f"/keys/{body['id']}")
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    # Every replica stops accepting it within the auth cache time (1 s here).
    wait_for(lambda: httpx.get(f"{gw.base_url}/models", headers=gw.headers(key)).status_code == 401, timeout=5)
    assert _admin(gw, "GET", "/keys", params={"tenant": "acme"}).json()["data"][0]["revoked_at"]
    _error(_admin(gw, "DELETE", "/keys/key_does_not_exist"), 404, "not_found")


def test_admin_api_rejects_bad_input(gw: GatewayProcess) -> None:
    _error(_admin(gw, "POST", "/keys", json={"name": "no tenant"}), 400, "invalid_request_error")
    _error(_admin(gw, "POST", "/keys", json={"tenant": "bad tenant"}), 400, "invalid_request_error")
    error = _error(_admin(gw, "POST", "/keys", json={"tenant": "acme", "burst": 3}), 400, "invalid_request_error")
    assert error["param"] == "burst"
    _error(_admin(gw, "POST", "/keys", json={"tenant": "acme", "rpm": -1}), 400, "invalid_request_error")
    _error(_admin(gw, "GET", "/usage", params={"since": "yesterday"}), 400, "invalid_request_error")
    # Each of these was a 500: a NUL reached Postgres, or an age overflowed the calendar.
    error = _error(_admin(gw, "POST", "/keys", json={"tenant": "acme", "name": "a\x00b"}), 400, "invalid_request_error")
    assert error["param"] == "name"
    assert _error(_admin(gw, "DELETE", "/keys/key%00x"), 400, "invalid_request_error")["param"] == "key_id"
    assert "year 1" in _error(_admin(gw, "GET", "/usage", params={"since": "9999999999d"}), 400,
                              "invalid_request_error")["message"]
    for when in ({"since": "0001-01-01T00:00:00+05:00"}, {"until": "9999-12-31T23:59:59-05:00"}):
        assert "9999 in UTC" in _error(_admin(gw, "GET", "/usage", params=when), 400,
                                       "invalid_request_error")["message"]
    error = _error(_admin(gw, "GET", "/usage", params={"since": "2026-02-01", "until": "2026-01-01"}), 400,
                   "invalid_request_error")
    assert error["param"] == "since"
    bad = gw.memgate("usage", "--since", "9999999999d")
    assert bad.returncode == 1 and "year 1" in bad.stderr and "Traceback" not in bad.stderr
    # One rule for a key's name, whoever creates the key.
    assert _error(_admin(gw, "POST", "/keys", json={"tenant": "acme", "name": "n" * 101}), 400,
                  "invalid_request_error")["param"] == "name"
    unnamed = _admin(gw, "POST", "/keys", json={"tenant": "acme", "name": ""})
    assert unnamed.status_code == 201 and unnamed.json()["name"] is None, unnamed.text
    bad = gw.memgate("keys", "create", "--tenant", "acme", "--name", "n" * 101)
    assert bad.returncode == 1 and "--name" in bad.stderr and "Traceback" not in bad.stderr


def test_only_admin_keys_may_call_the_admin_api(gw: GatewayProcess) -> None:
    for method, path in (("GET", "/keys"), ("POST", "/keys"), ("DELETE", "/keys/key_x"), ("GET", "/usage")):
        kw = {"json": {"tenant": "default"}} if method == "POST" else {}
        error = _error(_admin(gw, method, path, key=gw.api_key, **kw), 403, "permission_error")  # the bootstrap key
        assert "admin" in error["message"]
        _error(httpx.request(method, f"{gw.base_url}/admin{path}"), 401, "authentication_error")
    # A key created with --admin by the CLI has the scope; its listing says so.
    result = gw.memgate("keys", "create", "--tenant", "ops", "--admin", "--name", "operator", "--quiet")
    assert result.returncode == 0, result.stderr
    cli_admin = result.stdout.strip()
    assert _admin(gw, "GET", "/keys", key=cli_admin, params={"tenant": "ops"}).json()["data"][0]["admin"] is True
    listing = gw.memgate("keys", "list", "--tenant", "ops")
    assert listing.returncode == 0 and "admin" in listing.stdout and "operator" in listing.stdout


def test_per_key_rate_limit_gives_429_with_headers(gw: GatewayProcess) -> None:
    key = _admin(gw, "POST", "/keys", json={"tenant": "ops", "admin": True, "memory_read_rpm": 2}).json()["key"]
    first, second, third = (_admin(gw, "GET", "/usage", key=key) for _ in range(3))  # (admin reads: memory_read)
    assert first.status_code == second.status_code == 200
    assert (first.headers["x-ratelimit-limit"], first.headers["x-ratelimit-scope"]) == ("2", "memory_read")
    assert (first.headers["x-ratelimit-remaining"], second.headers["x-ratelimit-remaining"]) == ("1", "0")
    assert "retry-after" not in first.headers
    error = _error(third, 429, "rate_limit_error")
    assert (error["code"], error["scope"]) == ("rate_limit_exceeded", "memory_read")
    assert 1 <= int(third.headers["retry-after"]) == error["retry_after_seconds"] <= 60
    assert third.headers["x-ratelimit-remaining"] == "0"
    assert int(third.headers["x-ratelimit-reset"]) >= int(third.headers["retry-after"])
    # Its writes have their own bucket, at the gateway's default.
    written = _admin(gw, "POST", "/keys", key=key, json={"tenant": "ops-2"})
    assert written.status_code == 201 and written.headers["x-ratelimit-scope"] == "memory_write"
    # A key made unlimited in a scope gets no rate limit headers there, and no 429.
    free = _admin(gw, "POST", "/keys", json={"tenant": "ops", "admin": True, "memory_read_rpm": 0}).json()["key"]
    unlimited = [_admin(gw, "GET", "/keys", key=free, params={"tenant": "nobody"}) for _ in range(5)]
    assert all(r.status_code == 200 and "x-ratelimit-limit" not in r.headers for r in unlimited)


def test_usage_report_over_http_and_cli(gw: GatewayProcess) -> None:
    report = _admin(gw, "GET", "/usage", params={"since": "2020-01-01T00:00:00Z", "tenant": "default"})
    assert report.status_code == 200, report.text
    body = report.json()
    assert body["object"] == "usage_report" and body["tenant"] == "default"
    assert {"requests", "errors", "input_tokens", "output_tokens", "avg_latency_ms"} <= set(body["totals"])
    assert {"by_model", "by_provider", "by_key"} <= set(body)
    result = gw.memgate("usage", "--since", "7d", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["object"] == "usage_report"
    text = gw.memgate("usage", "--tenant", "default")
    assert text.returncode == 0 and "usage of tenant default" in text.stdout
    bad = gw.memgate("usage", "--since", "yesterday")
    assert bad.returncode != 0 and "--since" in bad.stderr


def test_the_memory_api_counts_against_the_keys_limits(gw: GatewayProcess) -> None:
    key = _admin(gw, "POST", "/keys", json={"tenant": "memlimited", "memory_read_rpm": 2,
                                            "memory_write_rpm": 1}).json()["key"]
    auth = {"Authorization": f"Bearer {key}"}
    answers = [httpx.get(f"{gw.base_url}/memory/threads", headers=auth),
               httpx.post(f"{gw.base_url}/memory/search", headers=auth, json={"resource_id": "r1", "query": "x" * 1000}),
               httpx.get(f"{gw.base_url}/memory/resources", headers=auth),
               httpx.get(f"{gw.base_url}/memory/resources", headers=auth)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert [(a.headers["x-ratelimit-scope"], a.headers["x-ratelimit-remaining"]) for a in answers] == [
        ("memory_read", "1"), ("memory_write", "0"), ("memory_read", "0"), ("memory_read", "0")]  # on every answer
    assert _error(answers[3], 429, "rate_limit_error")["code"] == "rate_limit_exceeded"
    assert 1 <= int(answers[3].headers["retry-after"]) <= 60


def test_chat_counts_against_the_keys_limit_and_is_recorded_in_usage(gw: GatewayProcess,
                                                                     fake_provider: FakeProvider) -> None:
    key = _admin(gw, "POST", "/keys", json={"tenant": "chatlimited", "rpm": 1, "burst": 2}).json()["key"]
    calls_before = len(fake_provider.requests)
    answers = [httpx.post(f"{gw.base_url}/chat/completions", headers={"Authorization": f"Bearer {key}"}, timeout=30,
                          json={"model": "fake/usage-model", "messages": [{"role": "user", "content": f"Hi {n}."}]})
               for n in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert [a.headers["x-ratelimit-remaining"] for a in answers] == ["1", "0", "0"]
    assert _error(answers[2], 429, "rate_limit_error")["code"] == "rate_limit_exceeded"
    assert 1 <= int(answers[2].headers["retry-after"]) <= 60
    assert len(fake_provider.requests) - calls_before == 2  # the refused one never reached the provider

    def recorded() -> dict | None:
        report = _admin(gw, "GET", "/usage", params={"since": "2020-01-01T00:00:00Z", "tenant": "chatlimited"})
        body = report.json()
        return body if body["totals"]["requests"] >= 2 else None

    body = wait_for(recorded, timeout=15)
    expected_in = sum(a.json()["usage"]["prompt_tokens"] for a in answers[:2])
    expected_out = sum(a.json()["usage"]["completion_tokens"] for a in answers[:2])
    assert (body["totals"]["requests"], body["totals"]["errors"]) == (2, 0)
    assert (body["totals"]["input_tokens"], body["totals"]["output_tokens"]) == (expected_in, expected_out)
    assert [(m["model"], m["requests"]) for m in body["by_model"]] == [("fake/usage-model", 2)]
