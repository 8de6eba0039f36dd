"""Deleting a thread or a resource removes its messages, observations and vectors everywhere:
the memory API, semantic search, and the memory injected into later requests."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from helpers import memory_text, observations, observer_idle, wait_for

from memgate_testing.fake_provider import FakeProvider
from memgate_testing.gateway import GatewayProcess


@pytest.fixture(scope="module")
def gateway(shaped_gateway: GatewayProcess) -> GatewayProcess:
    """Every test here runs against `memgate up` and against the split services."""
    return shaped_gateway

def _uid() -> str:
    return uuid.uuid4().hex[:8]


def _chat(gateway: GatewayProcess, thread: str, resource: str, content: str, key: str | None = None) -> httpx.Response:
    response = httpx.post(
        f"{gateway.base_url}/chat/completions",
        headers={**gateway.headers(key), "x-thread-id": thread, "x-resource-id": resource},
        json={"model": "fake/gpt-test", "messages": [{"role": "user", "content": content}]},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return response


def _get(gateway: GatewayProcess, path: str, key: str | None = None) -> httpx.Response:
    return httpx.get(f"{gateway.base_url}/memory/{path}", headers=gateway.headers(key), timeout=10)


def _delete(gateway: GatewayProcess, path: str, key: str | None = None) -> httpx.Response:
    return httpx.delete(f"{gateway.base_url}/memory/{path}", headers=gateway.headers(key), timeout=10)


def _search(gateway: GatewayProcess, resource: str, query: str, key: str | None = None) -> list[dict[str, Any]]:
    response = httpx.post(f"{gateway.base_url}/memory/search", headers=gateway.headers(key),
                          json={"resource_id": resource, "query": query, "limit": 100}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["data"]


def _assert_not_found(response: httpx.Response) -> None:
    assert response.status_code == 404, response.text
    error = response.json()["error"]
    assert error["type"] == "not_found"
    assert isinstance(error["message"], str) and error["message"]


def _remember(gateway: GatewayProcess, thread: str, resource: str, fact: str, key: str | None = None) -> None:
    """One exchange stating `fact`, observed and indexed before returning."""
    _chat(gateway, thread, resource, fact, key)
    wait_for(lambda: observations(gateway, thread, key), timeout=15)
    wait_for(lambda: any(h["thread_id"] == thread for h in _search(gateway, resource, fact, key)), timeout=10)


def _asks_without_memory_of(gateway: GatewayProcess, provider: FakeProvider, thread: str, resource: str,
                            question: str, *secrets: str) -> httpx.Response:
    response = _chat(gateway, thread, resource, question)
    sent = memory_text(provider.requests[-1])
    for secret in secrets:
        assert secret not in sent, f"{secret!r} still injected after deletion"
    return response


def test_delete_thread_removes_it_everywhere(gateway: GatewayProcess, provider: FakeProvider) -> None:
    resource = f"del-user-{_uid()}"
    doomed, kept = f"doomed-{_uid()}", f"kept-{_uid()}"
    _remember(gateway, doomed, resource, "My secret code word is Marmalade.")
    _remember(gateway, kept, resource, "My favourite mountain is Kilimanjaro.")

    # Before: search finds the fact, and a new thread of the resource is told about it.
    assert any("Marmalade" in h["text"] and h["thread_id"] == doomed for h in _search(gateway, resource, "code word"))
    _chat(gateway, f"before-{_uid()}", resource, "What is my secret code word?")
    assert "Marmalade" in memory_text(provider.requests[-1])

    response = _delete(gateway, f"threads/{doomed}")
    assert response.status_code == 200, response.text
    assert response.json() == {"id": doomed, "object": "thread", "deleted": True}

    for path in (f"threads/{doomed}", f"threads/{doomed}/messages", f"threads/{doomed}/observations"):
        _assert_not_found(_get(gateway, path))
    listed = _get(gateway, f"threads?resource_id={resource}").json()["data"]
    assert doomed not in {t["thread_id"] for t in listed} and kept in {t["thread_id"] for t in listed}
    hits = _search(gateway, resource, "What is my secret code word? Marmalade")
    assert hits, "the other thread's observation should still be found"
    assert all(h["thread_id"] != doomed and "Marmalade" not in h["text"] for h in hits)
    assert any("Kilimanjaro" in h["text"] for h in hits)

    # A new thread of the same resource no longer gets the fact; the kept thread's fact still comes.
    _asks_without_memory_of(gateway, provider, f"after-{_uid()}", resource,
                            "What is my secret code word? And my favourite mountain?", "Marmalade")
    assert "Kilimanjaro" in memory_text(provider.requests[-1])
    # Deleting again: it is gone.
    _assert_not_found(_delete(gateway, f"threads/{doomed}"))


def test_reused_thread_id_after_delete_starts_empty(gateway: GatewayProcess, provider: FakeProvider) -> None:
    """The same thread id used again after its deletion is a new, empty thread: no stale cached memory."""
    resource = f"reuse-user-{_uid()}"
    thread = f"reuse-{_uid()}"
    _remember(gateway, thread, resource, "My locker combination is 4812.")
    _chat(gateway, thread, resource, "Remind me later.")  # the thread's memory is now looked up (and cached)
    assert "4812" in memory_text(provider.requests[-1])
    observer_idle(gateway)  # the observer has finished with the thread: nothing is pending

    assert _delete(gateway, f"threads/{thread}").status_code == 200
    _assert_not_found(_get(gateway, f"threads/{thread}"))  # really gone before the id is used again
    response = _asks_without_memory_of(gateway, provider, thread, resource, "What is my locker combination?", "4812")
    assert response.headers["x-memory"] == "empty"
    messages = _get(gateway, f"threads/{thread}/messages").json()["data"]
    assert [m["content"] for m in messages if m["role"] == "user"] == ["What is my locker combination?"]


def test_deleted_thread_id_can_move_to_another_resource(gateway: GatewayProcess, provider: FakeProvider) -> None:
    thread, first = f"moving-{_uid()}", f"first-{_uid()}"
    _chat(gateway, thread, first, "My cat is called Pixel.")
    _chat(gateway, thread, first, "Noted?")  # a second lookup: the thread's memory is now cached with the cat
    assert "Pixel" in memory_text(provider.requests[-1])
    observer_idle(gateway)  # the observer has finished with the thread: nothing is pending
    assert _delete(gateway, f"threads/{thread}").status_code == 200
    _assert_not_found(_get(gateway, f"threads/{thread}"))
    response = _asks_without_memory_of(gateway, provider, thread, f"second-{_uid()}", "What is my cat called?", "Pixel")
    assert response.headers["x-memory"] == "empty"


def test_thread_deleted_before_it_was_observed_stays_deleted(gateway: GatewayProcess, provider: FakeProvider) -> None:
    """Deleting right after the exchange (before the observer's debounce ran) must not let the
    observer bring the thread back with its messages, observations and vectors."""
    resource = f"race-user-{_uid()}"
    thread = f"race-{_uid()}"
    _chat(gateway, thread, resource, "My passport number is ZX998877.")
    assert _delete(gateway, f"threads/{thread}").status_code == 200
    observer_idle(gateway)  # the observer has handled the exchange, after the delete

    _assert_not_found(_get(gateway, f"threads/{thread}"))
    assert all(h["thread_id"] != thread for h in _search(gateway, resource, "passport number"))
    _asks_without_memory_of(gateway, provider, f"later-{_uid()}", resource, "What is my passport number?", "ZX998877")


def test_delete_resource_removes_all_its_threads(gateway: GatewayProcess, provider: FakeProvider) -> None:
    doomed, other = f"doomed-res-{_uid()}", f"other-res-{_uid()}"
    first, second, survivor = f"r1-{_uid()}", f"r2-{_uid()}", f"r3-{_uid()}"
    _remember(gateway, first, doomed, "My bank is called Gringotts.")
    _remember(gateway, second, doomed, "My sister lives in Reykjavik.")
    _remember(gateway, survivor, other, "My bank is called Zurich Alpine.")

    response = _delete(gateway, f"resources/{doomed}")
    assert response.status_code == 200, response.text
    assert response.json() == {"id": doomed, "object": "resource", "deleted": True, "threads_deleted": 2}

    for thread in (first, second):
        for path in (f"threads/{thread}", f"threads/{thread}/messages", f"threads/{thread}/observations"):
            _assert_not_found(_get(gateway, path))
    assert _get(gateway, f"threads?resource_id={doomed}").json()["data"] == []
    assert doomed not in {r["resource_id"] for r in _get(gateway, "resources?limit=1000").json()["data"]}
    assert _search(gateway, doomed, "bank sister Gringotts Reykjavik") == []

    # A new thread of the deleted resource starts from nothing.
    response = _asks_without_memory_of(gateway, provider, f"fresh-{_uid()}", doomed,
                                       "What is my bank called and where does my sister live?",
                                       "Gringotts", "Reykjavik")
    assert response.headers["x-memory"] == "empty"
    # So does a deleted thread's id, even under another resource (its binding went with it).
    _asks_without_memory_of(gateway, provider, first, f"elsewhere-{_uid()}", "What is my bank called?", "Gringotts")

    # The other resource is untouched.
    assert _get(gateway, f"threads/{survivor}").json()["observation_count"] >= 1
    assert next(m["content"] for m in _get(gateway, f"threads/{survivor}/messages").json()["data"]) \
        == "My bank is called Zurich Alpine."
    assert any("Zurich Alpine" in h["text"] for h in _search(gateway, other, "bank"))
    _chat(gateway, f"other-new-{_uid()}", other, "What is my bank called?")
    assert "Zurich Alpine" in memory_text(provider.requests[-1])

    # The resource now holds only the thread made after its deletion.
    assert _delete(gateway, f"resources/{doomed}").json()["threads_deleted"] == 1
    _assert_not_found(_delete(gateway, f"resources/{doomed}"))


def test_reused_thread_id_after_resource_delete_starts_empty(gateway: GatewayProcess, provider: FakeProvider) -> None:
    resource, thread = f"gone-res-{_uid()}", f"gone-thread-{_uid()}"
    _chat(gateway, thread, resource, "My bike lock code is 7316.")
    _chat(gateway, thread, resource, "Got it?")
    assert "7316" in memory_text(provider.requests[-1])
    observer_idle(gateway)  # the observer has finished with the thread: nothing is pending
    assert _delete(gateway, f"resources/{resource}").json()["threads_deleted"] == 1
    _assert_not_found(_get(gateway, f"threads/{thread}"))
    response = _asks_without_memory_of(gateway, provider, thread, resource, "What is my bike lock code?", "7316")
    assert response.headers["x-memory"] == "empty"


@pytest.fixture(scope="module")
def tenant_x_key(gateway: GatewayProcess) -> str:
    result = gateway.memgate("keys", "create", "--tenant", "x", "--quiet")
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_another_tenant_cannot_delete(gateway: GatewayProcess, provider: FakeProvider, tenant_x_key: str) -> None:
    resource, thread = f"owned-{_uid()}", f"owned-thread-{_uid()}"
    _remember(gateway, thread, resource, "My dentist is Doctor Okonkwo.")

    _assert_not_found(_delete(gateway, f"threads/{thread}", tenant_x_key))
    _assert_not_found(_delete(gateway, f"resources/{resource}", tenant_x_key))
    _assert_not_found(_get(gateway, f"threads/{thread}", tenant_x_key))
    assert _search(gateway, resource, "dentist", tenant_x_key) == []

    # The owner's thread, observations and vectors are all still there.
    found = _get(gateway, f"threads/{thread}").json()
    assert found["message_count"] == 2 and found["observation_count"] >= 1
    assert any("Okonkwo" in h["text"] for h in _search(gateway, resource, "dentist"))
    _chat(gateway, f"owner-new-{_uid()}", resource, "Who is my dentist?")
    assert "Okonkwo" in memory_text(provider.requests[-1])

    # Tenant x deleting its own thread of the same id leaves the owner's alone.
    _chat(gateway, thread, resource, "Tenant x's own words.", key=tenant_x_key)
    assert _delete(gateway, f"threads/{thread}", tenant_x_key).status_code == 200
    assert _get(gateway, f"threads/{thread}").json()["message_count"] >= 2
    _assert_not_found(_delete(gateway, f"resources/{resource}", tenant_x_key))  # x has no thread left there
    assert any("Okonkwo" in h["text"] for h in _search(gateway, resource, "dentist"))


def test_unauthenticated_delete_is_refused(gateway: GatewayProcess) -> None:
    response = httpx.delete(f"{gateway.base_url}/memory/threads/anything")
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"
