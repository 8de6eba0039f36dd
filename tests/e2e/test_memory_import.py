"""Importing messages (POST /v1/memory/threads/{id}/messages): stored with their times,
grouped into exchanges as chat makes them, observed as if chatted (dated by their times),
validated before anything is stored, and scoped by tenant and resource."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from helpers import assert_error, memory_text, observations, wait_for

from memgate_testing.fake_provider import FakeProvider
from memgate_testing.gateway import GatewayProcess

MAY_8 = "2023-05-08T13:56:00Z"
MAY_8_ANSWER = "2023-05-08T13:57:30+00:00"
JULY_1 = datetime(2023, 7, 1, 9, 30, tzinfo=UTC).timestamp()  # as unix seconds

TWO_EXCHANGES = [
    {"role": "user", "content": "My sister Lena moved to Copenhagen with her two cats.", "created_at": MAY_8},
    {"role": "assistant", "content": "Copenhagen has excellent cycling lanes and harbour baths.",
     "created_at": MAY_8_ANSWER},
    {"role": "user", "content": "I adopted a greyhound called Pixel from the shelter.", "created_at": JULY_1},
    {"role": "assistant", "content": "Pixel is a lovely name for a greyhound.", "created_at": JULY_1 + 45},
]


def _uid() -> str:
    return uuid.uuid4().hex[:8]


def _import(gateway: GatewayProcess, thread: str, body: Any, key: str | None = None) -> httpx.Response:
    kwargs: dict[str, Any] = {"content": body} if isinstance(body, bytes) else {"json": body}
    return httpx.post(f"{gateway.base_url}/memory/threads/{thread}/messages", headers=gateway.headers(key),
                      timeout=30, **kwargs)


def _messages(gateway: GatewayProcess, thread: str, key: str | None = None) -> httpx.Response:
    return httpx.get(f"{gateway.base_url}/memory/threads/{thread}/messages", headers=gateway.headers(key), timeout=10)


def _when(value: str | float) -> datetime:
    if isinstance(value, str):
        return datetime.fromisoformat(value)
    return datetime.fromtimestamp(value, UTC)


@pytest.fixture(scope="module")
def other_key(gateway: GatewayProcess) -> str:
    result = gateway.memgate("keys", "create", "--tenant", "import-other", "--quiet")
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_imported_messages_keep_their_times_and_are_observed_on_their_dates(
    gateway: GatewayProcess, provider: FakeProvider,
) -> None:
    thread, resource = f"import-{_uid()}", f"import-user-{_uid()}"
    response = _import(gateway, thread, {"resource_id": resource, "messages": TWO_EXCHANGES})
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["object"], body["thread_id"], body["resource_id"], body["exchanges"]) == ("list", thread, resource, 2)
    assert [(m["role"], m["content"]) for m in body["data"]] == [(m["role"], m["content"]) for m in TWO_EXCHANGES]
    assert all(m["id"].startswith("msg_") for m in body["data"])

    stored = _messages(gateway, thread).json()["data"]
    assert [m["id"] for m in stored] == [m["id"] for m in body["data"]]
    assert [(m["role"], m["content"]) for m in stored] == [(m["role"], m["content"]) for m in TWO_EXCHANGES]
    assert [_when(m["created_at"]) for m in stored] == [_when(m["created_at"]) for m in TWO_EXCHANGES]
    assert [_when(m["created_at"]) for m in body["data"]] == [_when(m["created_at"]) for m in TWO_EXCHANGES]
    exchanges = [m["exchange_id"] for m in stored]
    assert exchanges[0] == exchanges[1] != exchanges[2] == exchanges[3]

    # The observer sees them as chatted exchanges, dated by the messages' times.
    found = wait_for(lambda: (lambda obs: obs if {"2023-05-08", "2023-07-01"} <= {o["observed_on"] for o in obs}
                              else None)(observations(gateway, thread)), timeout=30)
    assert any("Pixel" in o["text"] and o["observed_on"] == "2023-07-01" for o in found)
    assert any("Copenhagen" in o["text"] and o["observed_on"] == "2023-05-08" for o in found)
    by_id = {m["id"]: m for m in stored}
    assert all(set(o["source_message_ids"]) <= set(by_id) for o in found)

    # And chat in the thread remembers them.
    chat = httpx.post(f"{gateway.base_url}/chat/completions",
                      headers={**gateway.headers(), "x-thread-id": thread, "x-resource-id": resource},
                      json={"model": "fake/gpt-test", "messages": [{"role": "user", "content": "What is my dog called?"}]},
                      timeout=30)
    assert chat.status_code == 200, chat.text
    assert "Pixel" in memory_text(provider.requests[-1])


def test_import_appends_to_an_existing_thread_and_groups_like_chat(gateway: GatewayProcess) -> None:
    thread, resource = f"import-{_uid()}", f"import-user-{_uid()}"
    first = _import(gateway, thread, {"resource_id": resource, "messages": TWO_EXCHANGES[:2]})
    assert first.status_code == 201, first.text
    # No resource id needed once the thread exists. No times: now, in the order sent. An
    # assistant message first is an exchange alone; a trailing run of user messages is one.
    before = time.time()
    messages = [{"role": "assistant", "content": "Welcome back!"},
                {"role": "user", "content": "Still here."}, {"role": "user", "content": "I moved to Oslo."},
                {"role": "assistant", "content": "Oslo, noted."},
                {"role": "user", "content": "one\u0000two"}, {"role": "user", "content": "three"}]
    second = _import(gateway, thread, {"messages": messages})
    assert second.status_code == 201, second.text
    assert second.json()["resource_id"] == resource and second.json()["exchanges"] == 3

    stored = _messages(gateway, thread).json()["data"]
    assert [m["content"] for m in stored[2:]] == ["Welcome back!", "Still here.", "I moved to Oslo.", "Oslo, noted.",
                                                  "one\ufffdtwo", "three"]
    assert all(_when(m["created_at"]).timestamp() >= before - 1 for m in stored[2:])
    exchanges = [m["exchange_id"] for m in stored[2:]]
    assert len({exchanges[0], exchanges[1], exchanges[4]}) == 3
    assert exchanges[1] == exchanges[2] == exchanges[3] and exchanges[4] == exchanges[5]


@pytest.mark.parametrize(("body", "code"), [
    (b"{not json", "invalid_json"),
    (b"", "invalid_json"),
    ({"resource_id": "r-1", "messages": []}, None),
    ({"resource_id": "r-1"}, None),
    ({"resource_id": "r-1", "messages": [{"role": "user", "content": "hi"}] * 1001}, None),
    ({"resource_id": "r-1", "messages": [{"role": "system", "content": "be terse"}]}, None),
    ({"resource_id": "r-1", "messages": [{"role": "tool", "content": "42"}]}, None),
    ({"resource_id": "r-1", "messages": [{"role": "user", "content": ""}]}, None),
    ({"resource_id": "r-1", "messages": [{"role": "user", "content": ["parts"]}]}, None),
    ({"resource_id": "r-1", "messages": [{"role": "user", "content": "x" * 700_000}] * 2}, None),
    ({"resource_id": "r-1", "messages": [{"role": "user", "content": "hi", "created_at": "yesterday"}]}, None),
    ({"resource_id": "r-1", "messages": [{"role": "user", "content": "hi", "created_at": True}]}, None),
    ({"resource_id": "r-1", "messages": [{"role": "user", "content": "hi", "created_at": time.time() + 3600}]}, None),
    ({"resource_id": "r-1", "messages": [{"role": "user", "content": "late", "created_at": "2023-05-08T10:00:00Z"},
                                         {"role": "user", "content": "early", "created_at": "2023-05-07T10:00:00Z"}]},
     None),
    ({"resource_id": "bad id!", "messages": [{"role": "user", "content": "hi"}]}, None),
    ({"messages": [{"role": "user", "content": "no thread to import into, and no resource to create it for"}]},
     None),
])
def test_bad_imports_are_400_and_store_nothing(gateway: GatewayProcess, body: Any, code: str | None) -> None:
    thread = f"import-bad-{_uid()}"
    error = assert_error(_import(gateway, thread, body), 400, "invalid_request_error")
    if code:
        assert error["code"] == code
    assert _messages(gateway, thread).status_code == 404  # not even the thread was created


def test_a_bad_message_anywhere_stores_none_of_them(gateway: GatewayProcess) -> None:
    thread, resource = f"import-{_uid()}", f"import-user-{_uid()}"
    assert _import(gateway, thread, {"resource_id": resource, "messages": TWO_EXCHANGES[:2]}).status_code == 201
    bad = [*TWO_EXCHANGES[2:], {"role": "user", "content": "and then", "created_at": "2022-01-01T00:00:00Z"}]
    assert_error(_import(gateway, thread, {"messages": bad}), 400, "invalid_request_error")
    assert len(_messages(gateway, thread).json()["data"]) == 2


def test_a_thread_of_another_resource_is_not_found(gateway: GatewayProcess) -> None:
    thread = f"import-{_uid()}"
    assert _import(gateway, thread, {"resource_id": "owner", "messages": TWO_EXCHANGES[:2]}).status_code == 201
    error = assert_error(_import(gateway, thread, {"resource_id": "intruder", "messages": TWO_EXCHANGES[2:]}),
                          404, "not_found")
    assert error["code"] == "thread_not_found"
    assert len(_messages(gateway, thread).json()["data"]) == 2


def test_tenants_never_see_each_others_imports(gateway: GatewayProcess, other_key: str) -> None:
    thread, resource = f"import-{_uid()}", f"import-user-{_uid()}"
    assert _import(gateway, thread, {"resource_id": resource, "messages": TWO_EXCHANGES}).status_code == 201

    # The other tenant has no such thread: reading it is a 404, importing without a resource a 400.
    assert_error(_messages(gateway, thread, other_key), 404, "not_found")
    assert_error(_import(gateway, thread, {"messages": TWO_EXCHANGES[:2]}, other_key), 400, "invalid_request_error")
    # With a resource, it creates its own thread of that id, which the first tenant never sees.
    mine = [{"role": "user", "content": "My locker code is 4711."}]
    response = _import(gateway, thread, {"resource_id": resource, "messages": mine}, other_key)
    assert response.status_code == 201, response.text
    assert [m["content"] for m in _messages(gateway, thread, other_key).json()["data"]] == ["My locker code is 4711."]
    assert [m["content"] for m in _messages(gateway, thread).json()["data"]] == [m["content"] for m in TWO_EXCHANGES]


def test_import_needs_a_key(gateway: GatewayProcess) -> None:
    response = httpx.post(f"{gateway.base_url}/memory/threads/import-anon/messages",
                          json={"resource_id": "r", "messages": TWO_EXCHANGES}, timeout=10)
    assert_error(response, 401, "authentication_error")


def test_history_can_be_imported_into_a_thread_id_that_was_deleted_before(gateway: GatewayProcess) -> None:
    # The thread's delete refuses what was under way when it happened, not messages dated
    # before it that arrive later (an import of old history).
    thread = f"reimport-{uuid.uuid4().hex[:6]}"
    assert _import(gateway, thread, {"resource_id": "u-reimport", "messages": TWO_EXCHANGES[:2]}).status_code == 201
    assert httpx.delete(f"{gateway.base_url}/memory/threads/{thread}", headers=gateway.headers()).status_code == 200
    assert _import(gateway, thread, {"resource_id": "u-reimport", "messages": TWO_EXCHANGES}).status_code == 201
    stored = httpx.get(f"{gateway.base_url}/memory/threads/{thread}/messages", headers=gateway.headers()).json()["data"]
    assert [m["content"] for m in stored] == [m["content"] for m in TWO_EXCHANGES]
