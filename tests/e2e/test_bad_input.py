"""Bodies too large and routes that do not exist get errors in the OpenAI shape (the
fuzzing of everything else is tests/e2e/test_fuzz.py)."""

from __future__ import annotations

import httpx

from memgate_testing.fake_provider import FakeProvider
from memgate_testing.gateway import GatewayProcess


def test_oversize_body_is_413(gateway: GatewayProcess, provider: FakeProvider) -> None:
    big = b'{"model": "fake/x", "messages": [{"role": "user", "content": "' + b"a" * (5 * 1024 * 1024) + b'"}]}'
    response = httpx.post(f"{gateway.base_url}/chat/completions", content=big, timeout=30,
                          headers={**gateway.headers(), "content-type": "application/json"})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    assert provider.requests == []


def test_unknown_route_and_method(gateway: GatewayProcess) -> None:
    missing = httpx.get(f"{gateway.base_url}/nothing-here", headers=gateway.headers())
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found"
    wrong = httpx.get(f"{gateway.base_url}/chat/completions", headers=gateway.headers())
    assert wrong.status_code == 405 and wrong.json()["error"]["type"] == "invalid_request_error"


def test_what_would_fail_after_storing_is_refused_before(gateway: GatewayProcess, provider: FakeProvider) -> None:
    """A model name that cannot go into a header or a database, tool calls that are not a
    list, JSON nested thousands deep: 400, nothing stored, nothing sent upstream."""
    memory = {**gateway.headers(), "x-thread-id": "bad-input-t", "x-resource-id": "bad-input-r"}
    user = [{"role": "user", "content": "hello"}]
    for body in ({"model": "fake/\u6a21\u578b", "messages": user}, {"model": "fake/a\x00b", "messages": user},
                 {"model": "fake/m", "messages": [*user, {"role": "assistant", "tool_calls": 5}]}):
        response = httpx.post(f"{gateway.base_url}/chat/completions", json=body, headers=memory)
        assert response.status_code == 400, response.text
        assert response.json()["error"]["param"] in {"model", "messages[1].tool_calls"}
    deep = b'{"model": "fake/m", "messages": ' + b"[" * 3000 + b"]" * 3000 + b"}"
    response = httpx.post(f"{gateway.base_url}/chat/completions", content=deep,
                          headers={**memory, "content-type": "application/json"})
    assert (response.status_code, response.json()["error"]["code"]) == (400, "invalid_json")
    assert provider.requests == []
    assert httpx.get(f"{gateway.base_url}/memory/threads/bad-input-t", headers=gateway.headers()).status_code == 404


def test_what_the_stores_cannot_hold_is_kept_as_text_does(gateway: GatewayProcess, provider: FakeProvider) -> None:
    """A message's `name` with a NUL reaches the provider untouched and is remembered with
    U+FFFD, as content is (it was a 500 after the provider had answered, and nothing kept)."""
    memory = {**gateway.headers(), "x-thread-id": "nul-name-t", "x-resource-id": "nul-name-r"}
    response = httpx.post(f"{gateway.base_url}/chat/completions", headers=memory, timeout=30, json={
        "model": "fake/m", "messages": [{"role": "user", "name": "bob\x00", "content": "hi\x00"}]})
    assert response.status_code == 200, response.text
    assert provider.requests[-1]["body"]["messages"][-1]["name"] == "bob\x00"
    stored = httpx.get(f"{gateway.base_url}/memory/threads/nul-name-t/messages", headers=gateway.headers()).json()
    assert stored["data"][0]["content"] == "hi\ufffd" and stored["total"] == 2


def test_ids_and_offsets_the_stores_cannot_take_are_400(gateway: GatewayProcess) -> None:
    base, auth = gateway.base_url, gateway.headers()
    for response in (httpx.get(f"{base}/memory/threads/a%00b", headers=auth),
                     httpx.delete(f"{base}/memory/resources/r%00", headers=auth),
                     httpx.get(f"{base}/memory/threads", params={"resource_id": "r\x00"}, headers=auth),
                     httpx.post(f"{base}/memory/search", json={"resource_id": "r\x00", "query": "x"}, headers=auth)):
        assert (response.status_code, response.json()["error"]["code"]) == (400, "invalid_value"), response.text
    for path in ("/memory/threads", "/memory/resources"):
        assert httpx.get(f"{base}{path}", params={"offset": 2**63}, headers=auth).status_code == 400
        assert httpx.get(f"{base}{path}", params={"offset": 2**63 - 1}, headers=auth).json()["data"] == []


def test_a_search_query_has_a_size_limit(gateway: GatewayProcess) -> None:
    response = httpx.post(f"{gateway.base_url}/memory/search", headers=gateway.headers(),
                          json={"resource_id": "r1", "query": "x" * 4_000_001})
    assert (response.status_code, response.json()["error"]["code"]) == (400, "query_too_long")
    ok = httpx.post(f"{gateway.base_url}/memory/search", headers=gateway.headers(), json={"resource_id": "r1", "query": "x"})
    assert ok.status_code == 200
