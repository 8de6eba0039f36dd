"""Tenants, resources and keys: who may see what, with OpenAI-shaped errors."""

from __future__ import annotations

import uuid

import httpx
import openai
import pytest
from helpers import assert_error, memory_text

from memgate_testing.fake_provider import FakeProvider
from memgate_testing.gateway import GatewayProcess

SECRET = "My secret project is called Bluebird."



@pytest.fixture(scope="module")
def gateway(shaped_gateway: GatewayProcess) -> GatewayProcess:
    """Every test here runs against `memgate up` and against the split services."""
    return shaped_gateway

def _chat(gateway: GatewayProcess, key: str, headers: dict[str, str], content: str = "hello") -> httpx.Response:
    return httpx.post(
        f"{gateway.base_url}/chat/completions",
        headers={**gateway.headers(key), **headers},
        json={"model": "fake/gpt-test", "messages": [{"role": "user", "content": content}]},
        timeout=30,
    )


@pytest.fixture(scope="module")
def tenant_b_key(gateway: GatewayProcess) -> str:
    # `memgate keys create` works while `memgate up` runs on the same data dir.
    result = gateway.memgate("keys", "create", "--tenant", "tenant-b", "--quiet")
    assert result.returncode == 0, result.stderr
    key = result.stdout.strip()
    assert key.startswith("msk_") and "\n" not in key
    return key


def test_tenants_never_see_each_other(gateway: GatewayProcess, provider: FakeProvider, tenant_b_key: str) -> None:
    ids = {"x-thread-id": f"shared-{uuid.uuid4().hex[:6]}", "x-resource-id": "same-user"}
    assert _chat(gateway, gateway.api_key, ids, SECRET).status_code == 200
    response = _chat(gateway, tenant_b_key, ids, "What is my secret project?")
    assert response.status_code == 200
    assert "Bluebird" not in memory_text(provider.requests[-1])
    assert response.headers["x-memory"] == "empty"
    # Tenant B's memory API shows B's own thread of that id, never A's messages.
    messages = httpx.get(f"{gateway.base_url}/memory/threads/{ids['x-thread-id']}/messages",
                         headers=gateway.headers(tenant_b_key)).json()["data"]
    assert [m["content"] for m in messages if m["role"] == "user"] == ["What is my secret project?"]
    a_messages = httpx.get(f"{gateway.base_url}/memory/threads/{ids['x-thread-id']}/messages",
                           headers=gateway.headers()).json()["data"]
    assert [m["content"] for m in a_messages if m["role"] == "user"] == [SECRET]


def test_thread_bound_to_its_resource(gateway: GatewayProcess, provider: FakeProvider) -> None:
    thread = f"bound-{uuid.uuid4().hex[:6]}"
    assert _chat(gateway, gateway.api_key, {"x-thread-id": thread, "x-resource-id": "owner"}).status_code == 200
    response = _chat(gateway, gateway.api_key, {"x-thread-id": thread, "x-resource-id": "intruder"}, SECRET)
    assert_error(response, 404, "not_found")
    assert len(provider.requests) == 1  # nothing reached the provider


def test_thread_without_resource_is_rejected(gateway: GatewayProcess, provider: FakeProvider) -> None:
    error = assert_error(_chat(gateway, gateway.api_key, {"x-thread-id": "lonely"}), 400, "invalid_request_error")
    assert "x-resource-id" in error["message"]
    assert provider.requests == []


@pytest.mark.parametrize("value", ["", "has space", "x" * 129, "../etc", "ünïcode"])
def test_invalid_ids_are_rejected(gateway: GatewayProcess, provider: FakeProvider, value: str) -> None:
    response = _chat(gateway, gateway.api_key, {"x-thread-id": "ok-thread", "x-resource-id": value}) \
        if value.isascii() else httpx.post(
            f"{gateway.base_url}/chat/completions",
            headers=[("authorization", f"Bearer {gateway.api_key}"), ("x-thread-id", "ok-thread"),
                     ("x-resource-id", value.encode())],
            json={"model": "fake/gpt-test", "messages": [{"role": "user", "content": "hi"}]},
        )
    assert_error(response, 400, "invalid_request_error")
    assert provider.requests == []


def test_missing_and_wrong_keys(gateway: GatewayProcess, provider: FakeProvider) -> None:
    body = {"model": "fake/gpt-test", "messages": [{"role": "user", "content": "hi"}]}
    no_key = httpx.post(f"{gateway.base_url}/chat/completions", json=body)
    assert_error(no_key, 401, "authentication_error")
    wrong = httpx.post(f"{gateway.base_url}/chat/completions", json=body,
                       headers={"Authorization": "Bearer msk_not_a_real_key_at_all_000000"})
    assert_error(wrong, 401, "authentication_error")
    client = openai.OpenAI(base_url=gateway.base_url, api_key="msk_wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="fake/gpt-test", messages=[{"role": "user", "content": "hi"}])
    assert provider.requests == []


def test_other_key_forms(gateway: GatewayProcess, provider: FakeProvider) -> None:
    body = {"model": "fake/gpt-test", "messages": [{"role": "user", "content": "hi"}]}
    by_x_api_key = httpx.post(f"{gateway.base_url}/chat/completions", json=body, headers={"x-api-key": gateway.api_key})
    assert by_x_api_key.status_code == 200
    byok = httpx.post(f"{gateway.base_url}/chat/completions", json=body, headers={
        "X-Memory-Gateway-Authorization": f"Bearer {gateway.api_key}", "Authorization": "Bearer sk-users-own-key"})
    assert byok.status_code == 200
    assert provider.requests[-1]["api_key"] == "sk-users-own-key"
    assert provider.requests[0]["api_key"] == "fake-provider-key"


def test_bad_bodies(gateway: GatewayProcess, provider: FakeProvider) -> None:
    url = f"{gateway.base_url}/chat/completions"
    h = {**gateway.headers(), "content-type": "application/json"}
    cases = [
        (b"{not json", "invalid_json"),
        (b"[]", "invalid_json"),
        (b'{"messages": [{"role": "user", "content": "hi"}]}', "missing_required_parameter"),
        (b'{"model": "fake/x"}', "missing_required_parameter"),
        (b'{"model": 5, "messages": [{"role": "user", "content": "hi"}]}', "invalid_type"),
        (b'{"model": "nope/x", "messages": [{"role": "user", "content": "hi"}]}', "unknown_provider"),
        (b'{"model": "fake/x", "messages": "hi"}', "invalid_type"),
        (b'{"model": "fake/x", "messages": [{"role": "user", "content": "\xff\xfe"}]}', "invalid_encoding"),
    ]
    for body, code in cases:
        error = assert_error(httpx.post(url, content=body, headers=h), 400, "invalid_request_error")
        assert error["code"] == code, (body, error)
    assert provider.requests == []
