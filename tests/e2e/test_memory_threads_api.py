"""The memory API's threads, as an application manages them: create, update, list and page,
clone, and delete messages.

Each endpoint is also tried with another tenant's key, which must find nothing of this one's.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from helpers import observer_idle, wait_for

from memgate_testing.gateway import GatewayProcess


@pytest.fixture(scope="module")
def other_key(gateway: GatewayProcess) -> str:
    """A key of another tenant."""
    result = gateway.memgate("keys", "create", "--tenant", f"tenant-{uuid.uuid4().hex[:8]}", "--quiet")
    return result.stdout.strip()


@pytest.fixture()
def api(gateway: GatewayProcess) -> httpx.Client:
    return httpx.Client(base_url=f"{gateway.base_url}/memory", headers=gateway.headers(), timeout=30)


@pytest.fixture()
def other(gateway: GatewayProcess, other_key: str) -> httpx.Client:
    return httpx.Client(base_url=f"{gateway.base_url}/memory", headers=gateway.headers(other_key), timeout=30)


def _tag() -> str:
    return uuid.uuid4().hex[:10]


def test_create_read_and_update_a_thread(api: httpx.Client, other: httpx.Client) -> None:
    thread_id, resource = f"t-{_tag()}", f"user-{_tag()}"
    created = api.post("/threads", json={"id": thread_id, "resource_id": resource, "title": "Trip to Oslo",
                                          "metadata": {"project": "travel"}})
    assert created.status_code == 201, created.text
    thread = created.json()
    assert {k: thread[k] for k in ("id", "object", "resource_id", "title", "metadata", "message_count")} == {
        "id": thread_id, "object": "thread", "resource_id": resource, "title": "Trip to Oslo",
        "metadata": {"project": "travel"}, "message_count": 0}
    assert thread["created_at"].endswith(("Z", "+00:00")) and thread["updated_at"] >= thread["created_at"]
    assert api.get(f"/threads/{thread_id}").json()["title"] == "Trip to Oslo"

    again = api.post("/threads", json={"id": thread_id, "resource_id": resource})
    assert again.status_code == 409 and again.json()["error"]["code"] == "thread_exists"

    renamed = api.patch(f"/threads/{thread_id}", json={"title": "Trip to Bergen"})
    assert renamed.status_code == 200
    assert (renamed.json()["title"], renamed.json()["metadata"]) == ("Trip to Bergen", {"project": "travel"})
    assert renamed.json()["updated_at"] >= thread["updated_at"]
    cleared = api.patch(f"/threads/{thread_id}", json={"title": None, "metadata": {"done": "yes"}}).json()
    assert (cleared["title"], cleared["metadata"]) == (None, {"done": "yes"})

    # Another tenant can neither see nor change it, nor take its id from this tenant's view.
    assert other.get(f"/threads/{thread_id}").status_code == 404
    assert other.patch(f"/threads/{thread_id}", json={"title": "mine"}).status_code == 404
    assert all(t["id"] != thread_id for t in other.get("/threads").json()["data"])
    assert other.post("/threads", json={"id": thread_id, "resource_id": "theirs"}).status_code == 201
    assert api.get(f"/threads/{thread_id}").json()["title"] is None  # (still this tenant's own)


def test_a_created_thread_is_the_one_chat_remembers_in(gateway: GatewayProcess, api: httpx.Client) -> None:
    resource = f"user-{_tag()}"
    thread = api.post("/threads", json={"resource_id": resource}).json()
    assert thread["id"].startswith("thread_") and thread["title"] is None and thread["metadata"] == {}
    memory = {**gateway.headers(), "x-thread-id": thread["id"], "x-resource-id": resource}
    chat = httpx.post(f"{gateway.base_url}/chat/completions", headers=memory, timeout=30,
                      json={"model": "fake/x", "messages": [{"role": "user", "content": "My name is Ada."}]})
    assert chat.status_code == 200
    assert api.get(f"/threads/{thread['id']}").json()["message_count"] == 2
    wrong = {**memory, "x-resource-id": f"user-{_tag()}"}  # the thread stays bound to its resource
    assert httpx.post(f"{gateway.base_url}/chat/completions", headers=wrong, timeout=30, json={
        "model": "fake/x", "messages": [{"role": "user", "content": "hi"}]}).status_code == 404


@pytest.mark.parametrize(("body", "param"), [
    ({}, None),
    ({"resource_id": "r", "id": "bad id!"}, "id"),
    ({"resource_id": "r\x00"}, "resource_id"),
    ({"resource_id": "r", "title": ""}, "title"),
    ({"resource_id": "r", "title": "x" * 257}, "title"),
    ({"resource_id": "r", "metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
    ({"resource_id": "r", "metadata": {"k": 5}}, None),
    ({"resource_id": "r", "colour": "red"}, None),
])
def test_bad_thread_bodies_are_400s_and_create_nothing(api: httpx.Client, body: dict[str, Any],
                                                       param: str | None) -> None:
    before = api.get("/threads").json()["total"]
    response = api.post("/threads", json=body)
    assert response.status_code == 400, response.text
    if param is not None:
        assert response.json()["error"]["param"] == param
    assert api.get("/threads").json()["total"] == before
    assert api.patch("/threads/anything", json={"title": 5}).status_code == 400


def test_lists_are_paged_with_a_total(api: httpx.Client, other: httpx.Client) -> None:
    resource = f"user-{_tag()}"
    ids = [api.post("/threads", json={"resource_id": resource}).json()["id"] for _ in range(5)]
    page = api.get("/threads", params={"resource_id": resource, "limit": 2, "offset": 1}).json()
    assert page["object"] == "list" and page["total"] == 5 and page["has_more"] is True
    assert [t["id"] for t in page["data"]] == ids[::-1][1:3]  # newest first
    last = api.get("/threads", params={"resource_id": resource, "limit": 2, "offset": 4}).json()
    assert (len(last["data"]), last["has_more"]) == (1, False)
    assert api.get("/threads", params={"limit": 201}).status_code == 400
    assert api.get("/threads").json()["data"].__len__() <= 50  # the default page
    assert other.get("/threads", params={"resource_id": resource}).json() == {
        "object": "list", "data": [], "total": 0, "has_more": False}


def test_messages_are_paged_in_either_order(api: httpx.Client, other: httpx.Client) -> None:
    thread_id = f"t-{_tag()}"
    imported = api.post(f"/threads/{thread_id}/messages", json={"resource_id": f"user-{_tag()}", "messages": [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"message {i}",
         "created_at": f"2025-01-01T10:{i:02d}:00Z"} for i in range(7)]})
    assert imported.status_code == 201, imported.text
    first = api.get(f"/threads/{thread_id}/messages", params={"limit": 3}).json()
    assert [m["content"] for m in first["data"]] == ["message 0", "message 1", "message 2"]
    assert (first["total"], first["has_more"]) == (7, True)
    assert {"id", "role", "content", "created_at"} <= first["data"][0].keys()
    newest = api.get(f"/threads/{thread_id}/messages", params={"limit": 3, "offset": 5, "order": "desc"}).json()
    assert [m["content"] for m in newest["data"]] == ["message 1", "message 0"] and newest["has_more"] is False
    assert api.get(f"/threads/{thread_id}/messages", params={"order": "sideways"}).status_code == 400
    assert api.get(f"/threads/{thread_id}/messages", params={"limit": 500}).status_code == 400
    assert other.get(f"/threads/{thread_id}/messages").status_code == 404


def test_a_turn_of_several_messages_keeps_its_order(gateway: GatewayProcess, api: httpx.Client) -> None:
    """A chat turn's messages arrive in one request: stored, listed and shown to the model in
    the order sent (with one time for all, they sorted by their random ids: 1 in 720 kept it)."""
    thread_id, resource = f"t-{_tag()}", f"user-{_tag()}"
    memory = {**gateway.headers(), "x-thread-id": thread_id, "x-resource-id": resource}
    said = [f"part {i} of my question" for i in range(6)]
    chat = httpx.post(f"{gateway.base_url}/chat/completions", headers=memory, timeout=30, json={
        "model": "fake/x", "messages": [{"role": "user", "content": text} for text in said]})
    assert chat.status_code == 200, chat.text
    stored = api.get(f"/threads/{thread_id}/messages").json()["data"]
    assert [m["content"] for m in stored[:-1]] == said and stored[-1]["role"] == "assistant"
    assert [m["created_at"] for m in stored] == sorted({m["created_at"] for m in stored})  # each its own time
    newest = api.get(f"/threads/{thread_id}/messages", params={"order": "desc"}).json()["data"]
    assert [m["content"] for m in newest[1:]] == said[::-1]


HISTORY = [  # two exchanges, months apart
    {"role": "user", "content": "My sister Lena moved to Copenhagen with her two cats.", "created_at": "2023-05-08T09:00:00Z"},
    {"role": "assistant", "content": "Copenhagen has excellent harbour baths.", "created_at": "2023-05-08T09:00:30Z"},
    {"role": "user", "content": "I adopted a greyhound called Pixel from the shelter.", "created_at": "2023-07-01T18:00:00Z"},
    {"role": "assistant", "content": "Pixel is a lovely name for a greyhound.", "created_at": "2023-07-01T18:00:45Z"},
]


def _observed(api: httpx.Client, thread_id: str, dates: set[str]) -> list[dict[str, Any]]:
    """The thread's observations once the observer has dated some on each of `dates`."""
    def ready() -> list[dict[str, Any]] | None:
        found: list[dict[str, Any]] = api.get(f"/threads/{thread_id}/observations").json()["data"]
        return found if dates <= {o["observed_on"] for o in found} else None
    return wait_for(ready, timeout=30)


def _search(api: httpx.Client, resource: str, query: str) -> list[str]:
    hits = api.post("/search", json={"resource_id": resource, "query": query, "limit": 20}).json()["data"]
    return [h.get("text", "") for h in hits]


def test_deleting_messages_takes_the_observations_only_they_made(
        gateway: GatewayProcess, api: httpx.Client, other: httpx.Client) -> None:
    thread_id, resource = f"t-{_tag()}", f"user-{_tag()}"
    assert api.post(f"/threads/{thread_id}/messages", json={"resource_id": resource, "messages": HISTORY}).status_code == 201
    stored = api.get(f"/threads/{thread_id}/messages").json()["data"]
    observed = _observed(api, thread_id, {"2023-05-08", "2023-07-01"})
    observer_idle(gateway)
    lena = [m["id"] for m in stored[:2]]
    from_lena = {o["id"] for o in observed if set(o["source_message_ids"]) <= set(lena)}
    assert from_lena and any("Lena" in t for t in _search(api, resource, "Lena Copenhagen cats"))

    assert other.request("DELETE", f"/threads/{thread_id}/messages", json={"message_ids": lena}).status_code == 404
    response = api.request("DELETE", f"/threads/{thread_id}/messages", json={"message_ids": [*lena, "msg_nope"]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert sorted(body["message_ids"]) == sorted(lena) and set(body["observation_ids"]) == from_lena

    left = api.get(f"/threads/{thread_id}/messages").json()
    assert [m["content"] for m in left["data"]] == [m["content"] for m in HISTORY[2:]] and left["total"] == 2
    remaining = api.get(f"/threads/{thread_id}/observations").json()["data"]
    assert not from_lena & {o["id"] for o in remaining} and any("Pixel" in o["text"] for o in remaining)
    assert not any("Lena" in t or "Copenhagen" in t for t in _search(api, resource, "Lena Copenhagen cats"))
    # The message after them was indexed with the text it followed ("...harbour baths."):
    # indexed again, no point has those words. A hit ranked by the words as well as by
    # meaning would score up to 2/60 (reciprocal rank fusion); by meaning alone 1/60 at most.
    hits = api.post("/search", json={"resource_id": resource, "query": "harbour baths", "limit": 20}).json()["data"]
    assert hits and max(h["score"] for h in hits) <= 1 / 60 + 1e-9, hits
    chat = httpx.post(f"{gateway.base_url}/chat/completions", timeout=30,
                      headers={**gateway.headers(), "x-thread-id": thread_id, "x-resource-id": resource},
                      json={"model": "fake/x", "messages": [{"role": "user", "content": "Where does Lena live?"}]})
    assert chat.status_code == 200 and chat.headers["x-memory"] == "injected"
    assert int(chat.headers["x-memory-messages"]) == 2  # the two left, not the deleted ones
    for bad in ({}, {"message_ids": []}, {"message_ids": "msg_1"}, {"message_ids": ["a\x00"]},
                {"message_ids": ["m" * 129]}, {"message_ids": ["msg 1"]}):
        assert api.request("DELETE", f"/threads/{thread_id}/messages", json=bad).status_code == 400


def test_a_message_named_through_another_thread_stays_findable(gateway: GatewayProcess, api: httpx.Client) -> None:
    """A delete through thread A names a message of thread B: nothing is deleted, and B's
    message keeps its vector (recall and search find it)."""
    keeper, resource = f"t-{_tag()}", f"user-{_tag()}"
    assert api.post(f"/threads/{keeper}/messages", json={"resource_id": resource, "messages": HISTORY}).status_code == 201
    lena = [m["id"] for m in api.get(f"/threads/{keeper}/messages").json()["data"][:2]]

    def found() -> set[str]:  # (the ids of messages among the hits)
        hits = api.post("/search", json={"resource_id": resource, "query": "Lena Copenhagen cats", "limit": 20})
        return {h.get("message_id") for h in hits.json()["data"]} & set(lena)
    assert wait_for(found, timeout=30) == set(lena)
    observer_idle(gateway)
    other_thread = api.post("/threads", json={"resource_id": resource}).json()["id"]
    response = api.request("DELETE", f"/threads/{other_thread}/messages", json={"message_ids": lena})
    assert response.status_code == 200 and response.json()["message_ids"] == []
    assert found() == set(lena)
    assert [m["id"] for m in api.get(f"/threads/{keeper}/messages").json()["data"][:2]] == lena


def test_a_clone_copies_the_chosen_messages_and_is_observed_on_their_dates(
        gateway: GatewayProcess, api: httpx.Client, other: httpx.Client) -> None:
    thread_id, resource = f"t-{_tag()}", f"user-{_tag()}"
    api.post("/threads", json={"id": thread_id, "resource_id": resource, "title": "Family",
                               "metadata": {"kind": "diary"}})
    assert api.post(f"/threads/{thread_id}/messages", json={"messages": HISTORY}).status_code == 201
    stored = api.get(f"/threads/{thread_id}/messages").json()["data"]

    july = api.post(f"/threads/{thread_id}/clone", json={"start": "2023-06-01T00:00:00", "new_thread_id": f"{thread_id}-july"})
    assert july.status_code == 201, july.text
    clone = july.json()
    assert clone["cloned_messages"] == 2 and clone["exchanges"] == 1  # a user message and its reply
    assert {k: clone["thread"][k] for k in ("id", "resource_id", "title", "metadata")} == {
        "id": f"{thread_id}-july", "resource_id": resource, "title": "Family", "metadata": {"kind": "diary"}}
    copied = api.get(f"/threads/{thread_id}-july/messages").json()["data"]
    assert [(m["role"], m["content"], m["created_at"]) for m in copied] == [
        (m["role"], m["content"], m["created_at"]) for m in stored[2:]]
    assert not {m["id"] for m in copied} & {m["id"] for m in stored}  # copies, with ids of their own
    assert {o["observed_on"] for o in _observed(api, f"{thread_id}-july", {"2023-07-01"})} == {"2023-07-01"}

    picked = api.post(f"/threads/{thread_id}/clone", json={"message_ids": [stored[0]["id"]], "title": "Lena"}).json()
    assert picked["cloned_messages"] == 1 and picked["thread"]["title"] == "Lena"
    assert picked["thread"]["id"].startswith("thread_")
    assert api.get(f"/threads/{thread_id}/messages").json()["total"] == 4  # the source is untouched

    taken = api.post(f"/threads/{thread_id}/clone", json={"new_thread_id": f"{thread_id}-july"})
    assert taken.status_code == 409 and taken.json()["error"]["param"] == "new_thread_id"
    assert other.post(f"/threads/{thread_id}/clone", json={}).status_code == 404
    for bad in ({"start": "2023-08-01T00:00:00Z", "end": "2023-06-01T00:00:00Z"}, {"message_ids": []},
                {"new_thread_id": "bad id"}, {"start": "yesterday"}, {"colour": "red"},
                {"message_ids": ["a\x00"]}, {"message_ids": ["m" * 129]},
                {"start": "0001-01-01T00:00:00+05:00"}, {"end": "9999-12-31T23:59:59-05:00"}):  # (were 500s)
        assert api.post(f"/threads/{thread_id}/clone", json=bad).status_code == 400, bad


def test_a_threads_own_thresholds_drive_its_observation_record_and_history(
        gateway: GatewayProcess, api: httpx.Client, other: httpx.Client) -> None:
    thread_id, resource = f"t-{_tag()}", f"user-{_tag()}"
    api.post("/threads", json={"id": thread_id, "resource_id": resource})
    defaults = api.get(f"/threads/{thread_id}/observations/record").json()
    assert defaults["generation"] == 0 and defaults["active_observations"] == []
    assert defaults["thresholds"] == {"observation_tokens": 30_000, "reflection_tokens": 40_000,
                                      "thread_observation_tokens": None, "thread_reflection_tokens": None}

    # Low thresholds of its own: a few exchanges activate observations, and the Reflector rewrites them.
    own = api.patch(f"/threads/{thread_id}/observations/config",
                    json={"observation_tokens": 100, "reflection_tokens": 100})
    assert own.status_code == 200 and own.json()["observation_tokens"] == 100
    facts = [f"My friend number {i} is called {name} and lives in {city} where she teaches mathematics at school."
             for i, (name, city) in enumerate([("Ada", "Oslo"), ("Bea", "Lyon"), ("Cleo", "Turin"), ("Dora", "Porto"),
                                               ("Eva", "Ghent"), ("Fay", "Cork"), ("Gia", "Bern"), ("Hana", "Graz")])]
    messages = [m for i, fact in enumerate(facts) for m in (  # each said twice a day, a month apart
        {"role": "user", "content": fact, "created_at": f"2024-{i + 1:02d}-01T10:00:00Z"},
        {"role": "assistant", "content": "Noted.", "created_at": f"2024-{i + 1:02d}-01T10:00:05Z"},
        {"role": "user", "content": f"Again: {fact}", "created_at": f"2024-{i + 1:02d}-01T11:00:00Z"},
        {"role": "assistant", "content": "Noted again.", "created_at": f"2024-{i + 1:02d}-01T11:00:05Z"})]
    assert api.post(f"/threads/{thread_id}/messages", json={"messages": messages}).status_code == 201

    history = wait_for(lambda: (lambda h: h if any(g["generation"] >= 1 and g["current"] for g in h["data"]) else None)(
        api.get(f"/threads/{thread_id}/observations/history").json()), timeout=30)
    assert history["object"] == "list" and history["total"] == len(history["data"]) >= 2
    newest, oldest = history["data"][0], history["data"][-1]
    assert newest["current"] and newest["superseded_at"] is None and newest["active_tokens"] > 0
    assert oldest["generation"] == 0 and oldest["superseded_at"] is not None  # (its buffered ones stay current)
    observer_idle(gateway)
    record = api.get(f"/threads/{thread_id}/observations/record").json()
    assert record["generation"] == newest["generation"] and record["active_observations"]
    assert all(o["generation"] == record["generation"] for o in record["active_observations"])
    assert record["active_tokens"] == sum(o["tokens"] for o in record["active_observations"])
    assert (record["observing"], record["pending_exchanges"]) == (False, 0)
    assert record["thresholds"]["thread_observation_tokens"] == 100

    cleared = api.patch(f"/threads/{thread_id}/observations/config", json={"reflection_tokens": None}).json()
    assert (cleared["reflection_tokens"], cleared["thread_reflection_tokens"]) == (40_000, None)
    assert cleared["thread_observation_tokens"] == 100  # (left out: kept)
    for bad in ({"observation_tokens": 50}, {"reflection_tokens": "many"}, {"colour": 1}):
        assert api.patch(f"/threads/{thread_id}/observations/config", json=bad).status_code == 400, bad
    for path in ("record", "history"):
        assert other.get(f"/threads/{thread_id}/observations/{path}").status_code == 404
    assert other.patch(f"/threads/{thread_id}/observations/config", json={"observation_tokens": 100}).status_code == 404


def test_the_observer_titles_an_untitled_thread_from_its_opening(gateway: GatewayProcess, api: httpx.Client) -> None:
    def chat(thread_id: str, resource: str, text: str) -> None:
        response = httpx.post(f"{gateway.base_url}/chat/completions", timeout=30, json={
            "model": "fake/x", "messages": [{"role": "user", "content": text}]},
            headers={**gateway.headers(), "x-thread-id": thread_id, "x-resource-id": resource})
        assert response.status_code == 200

    untitled, titled, resource = f"t-{_tag()}", f"t-{_tag()}", f"user-{_tag()}"
    api.post("/threads", json={"id": titled, "resource_id": resource, "title": "Mine"})
    chat(untitled, resource, "Help me plan a trip to Oslo in May. I like museums.")
    chat(titled, resource, "Help me plan a trip to Oslo in May.")
    assert wait_for(lambda: api.get(f"/threads/{untitled}").json()["title"], timeout=30) == \
        "Help me plan a trip to Oslo in May"
    observer_idle(gateway)
    assert api.get(f"/threads/{titled}").json()["title"] == "Mine"  # an application's title is never replaced

    api.patch(f"/threads/{untitled}", json={"title": None})  # cleared: it stays so (only an opening gives one)
    chat(untitled, resource, "Which museum first?")
    observer_idle(gateway)
    assert api.get(f"/threads/{untitled}").json()["title"] is None


def test_every_route_is_in_the_openapi_schema(gateway: GatewayProcess) -> None:
    paths = httpx.get(f"{gateway.base_url.removesuffix('/v1')}/docs/openapi.json").json()["paths"]
    expected = {
        "/v1/memory/threads": {"get", "post"}, "/v1/memory/threads/{thread_id}": {"get", "patch", "delete"},
        "/v1/memory/threads/{thread_id}/messages": {"get", "post", "delete"},
        "/v1/memory/threads/{thread_id}/clone": {"post"},
        "/v1/memory/threads/{thread_id}/observations/record": {"get"},
        "/v1/memory/threads/{thread_id}/observations/history": {"get"},
        "/v1/memory/threads/{thread_id}/observations/config": {"patch"},
        "/v1/responses": {"post"}, "/v1/messages": {"post"}, "/v1/chat/completions": {"post"},
    }
    for path, methods in expected.items():
        assert methods <= set(paths.get(path, {})), (path, sorted(paths.get(path, {})))
