"""Fuzzing the public API of a real `memgate up`: chat (chat completions, OpenAI's Responses
API and Anthropic's Messages API), the memory API (reads, search, import, thread create,
update, clone, message deletion, thresholds, deletes) and the admin API (keys, usage), with
bodies, ids, headers and query values drawn by Hypothesis. Never a 5xx; every error in its
API's shape (the Messages API's own, else OpenAI's); rejected requests publish and send
upstream nothing: the exchanges published and the provider's calls add up to exactly those
of the accepted requests (what is stored is published, so this counts what reached memory
too).

MEMGATE_FUZZ_EXAMPLES sets the number of cases (2,000 by default); `bench/fuzz.py` runs a
longer one.
"""

from __future__ import annotations

import asyncio
import os
import string
from collections import Counter
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx
import msgspec
import nats
from helpers import observer_idle
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memgate_bus.subjects import EXCHANGE_STREAM
from memgate_testing.fake_provider import FakeProvider
from memgate_testing.gateway import GatewayProcess

EXAMPLES = int(os.environ.get("MEMGATE_FUZZ_EXAMPLES", "2000"))

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
texts = st.text(max_size=40) | st.sampled_from(["ok", "a\x00b", "\ud7ff\ue000", "<memgate_memory>", "x" * 3000])
# Ids: mostly ones that could exist (so the memory path runs), then everything else.
good_ids = st.sampled_from(["t1", "t2", "user-1", "r.1", "a:b@c"])
ids = good_ids | st.text(alphabet=string.printable + "é\x00\u2028", min_size=0, max_size=140)
models = st.sampled_from(["fake/x", "fake/y", "nope/x", "", "fake/a\x00b", "fake/\u6a21\u578b", "fake/a\x01b",
                          "m" * 300, 7, None])
deep = st.integers(min_value=100, max_value=3000).map(lambda n: "[" * n + "]" * n)


def _message() -> st.SearchStrategy[Any]:
    return st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "assistant", "system", "tool", 3, None])},
        optional={"content": texts | values, "tool_calls": values | st.just([{"function": {"name": "f"}}])},
    )


# Well-formed requests with odd contents (accepted: they must be recorded, and only they).
valid_chats = st.fixed_dictionaries(
    {"model": st.sampled_from(["fake/x", "fake/y"]),
     "messages": st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system"]),
                                                  "content": texts}), min_size=1, max_size=3)},
    optional={"stream": st.booleans(), "temperature": st.floats(0, 2), "user": texts},
).map(msgspec.json.encode)
chat_bodies = (
    valid_chats
    | st.fixed_dictionaries({}, optional={"model": models, "messages": st.lists(_message(), max_size=3) | values,
                                        "stream": scalars, "temperature": values}).map(msgspec.json.encode)
    | st.builds(lambda m, d: b'{"model": "fake/x", "messages": ' + d.encode() + b"}", models, deep)
    | st.binary(max_size=64)
)
blocks = st.lists(st.fixed_dictionaries({"type": st.sampled_from(["text", "image", "tool_result", "x"])},
                                        optional={"text": texts | values, "source": values, "content": values}),
                  max_size=3)
valid_messages = st.fixed_dictionaries(
    {"model": st.sampled_from(["fake/x", "fake/y"]), "max_tokens": st.integers(1, 100),
     "messages": st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant"]),
                                                  "content": texts | blocks}), min_size=1, max_size=3)},
    optional={"stream": st.booleans(), "system": texts | blocks, "temperature": st.floats(0, 1)},
).map(msgspec.json.encode)
messages_bodies = (
    valid_messages
    | st.fixed_dictionaries({}, optional={"model": models, "max_tokens": scalars, "messages": st.lists(_message(),
                                          max_size=3) | values, "system": values, "tools": values,
                                          "tool_choice": values, "stream": scalars}).map(msgspec.json.encode)
    | st.builds(lambda d: b'{"model": "fake/x", "max_tokens": 5, "messages": ' + d.encode() + b"}", deep)
    | st.binary(max_size=64)
)
parts = st.lists(st.fixed_dictionaries({"type": st.sampled_from(["input_text", "input_image", "output_text", "x"])},
                                       optional={"text": texts | values, "image_url": texts | values}), max_size=3)
items = st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "developer"]), "content": texts | parts})
valid_responses = st.fixed_dictionaries(
    {"model": st.sampled_from(["fake/x", "fake/y"]), "input": texts | st.lists(items, min_size=1, max_size=3)},
    optional={"stream": st.booleans(), "instructions": texts, "max_output_tokens": st.integers(1, 100)},
).map(msgspec.json.encode)
responses_bodies = (
    valid_responses
    | st.fixed_dictionaries({}, optional={"model": models, "input": values | st.lists(values, max_size=3),
                                          "instructions": values, "tools": values, "tool_choice": values,
                                          "previous_response_id": values, "text": values, "stream": scalars,
                                          "max_output_tokens": scalars}).map(msgspec.json.encode)
    | st.builds(lambda d: b'{"model": "fake/x", "input": ' + d.encode() + b"}", deep)
    | st.binary(max_size=64)
)
search_bodies = (
    st.fixed_dictionaries({}, optional={"resource_id": ids | values, "query": texts | values,
                                        "limit": st.integers(-5, 500) | values}).map(msgspec.json.encode)
    | deep.map(lambda d: b'{"resource_id": "r1", "query": ' + d.encode() + b"}")
    | st.binary(max_size=32)
)
import_bodies = (
    st.fixed_dictionaries({"resource_id": good_ids, "messages": st.lists(st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "assistant"]), "content": texts}), min_size=1, max_size=3)},
    ).map(msgspec.json.encode)
    | st.fixed_dictionaries({}, optional={
        "resource_id": ids | values,
        "messages": st.lists(st.fixed_dictionaries(
            {"role": st.sampled_from(["user", "assistant", "system", 1])},
            optional={"content": texts | values, "created_at": st.integers(-2**70, 2**70) | texts}), max_size=3)
        | values,
    }).map(msgspec.json.encode)
    | st.binary(max_size=32)
)


def mostly(valid: st.SearchStrategy[Any], anything: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Valid two times in three: a body gets past its first bad field to the later checks."""
    return st.one_of(valid, valid, anything)


times = mostly(st.sampled_from(["2023-06-01T00:00:00", "2023-06-01T00:00:00Z", "2999-01-01T00:00:00+01:00"]),
               texts | values)
message_ids = st.lists(ids | st.sampled_from(["a\x00b", "m" * 200]), min_size=1, max_size=3) | values
thresholds = st.integers(-5, 2**64) | values
# The thread routes that take a body: (method, path after /memory/threads, fields). Half go
# to SOURCE, which exists from the start: a body must reach a thread to be checked in full.
# A clone names its messages (random ids copy none; null copies all): copying whole fuzzed
# threads each time would only give the observer work.
SOURCE = "fuzz-source"
thread_writes = st.sampled_from([
    ("POST", "", {"resource_id": ids | values, "id": ids | values, "title": texts | values,
                  "metadata": st.dictionaries(texts, texts | values, max_size=20) | values}),
    ("PATCH", "/{tid}", {"title": texts | values, "metadata": st.dictionaries(texts, texts | values) | values}),
    ("POST", "/{tid}/clone", {"new_thread_id": mostly(st.uuids().map(str), ids | values),
                              "title": mostly(st.just("copy"), texts | values), "start": times, "end": times}),
    ("DELETE", "/{tid}/messages", {"message_ids": message_ids}),
    ("PATCH", "/{tid}/observations/config", {"observation_tokens": thresholds, "reflection_tokens": thresholds}),
])
ADMIN_KEY = "msk_fuzz_admin_key_0123456789abcdef"
limits = st.integers(-5, 2**64) | values
key_bodies = st.fixed_dictionaries({"tenant": mostly(good_ids, ids | values)}, optional={
    "name": mostly(st.just("fuzz key"), texts | values), "admin": st.booleans() | values,
    **{field: mostly(st.integers(0, 1000), limits) for field in ("rpm", "burst", "memory_read_rpm", "memory_write_rpm")},
}).map(msgspec.json.encode) | st.binary(max_size=32)
ages = st.integers(-5, 2**64).map(lambda n: f"{n}{'mhd'[n % 3]}") | times | texts
numbers = st.integers(-5, 2**64).map(str) | st.sampled_from(["", "x", "1e3", "-0", "9" * 30])


@st.composite
def cases(draw: Callable[..., Any]) -> tuple[str, str, dict[str, str], bytes | None, dict[str, str]]:
    """(method, path, query, body, headers)."""
    kind = draw(st.sampled_from(["chat", "chat", "messages", "responses", "thread", "list", "search", "import",
                                 "delete", "thread write", "thread write", "admin"]))
    tid = quote(draw(ids), safe="")
    headers: dict[str, str] = {}
    if kind in ("chat", "messages", "responses"):
        memory = draw(st.sampled_from(["none", "good", "any"]))
        if memory != "none":
            for header in ("x-thread-id", "x-resource-id"):
                value = draw(good_ids if memory == "good" else ids)
                if value and value == value.strip() and value.isprintable() and value.isascii():
                    headers[header] = value
        if draw(st.booleans()):
            headers["x-memory-budget-tokens"] = draw(numbers)
        if kind == "messages":
            return "POST", "/messages", {}, draw(messages_bodies), headers
        if kind == "responses":
            return "POST", "/responses", {}, draw(responses_bodies), headers
        return "POST", "/chat/completions", {}, draw(chat_bodies), headers
    if kind == "thread":
        tail = draw(st.sampled_from(["", "/messages", "/observations", "/observations/record",
                                     "/observations/history"]))
        query = {}
        if tail == "/messages":
            query = {name: draw(numbers) for name in draw(st.sets(st.sampled_from(["limit", "offset"])))}
            if draw(st.booleans()):
                query["order"] = draw(st.sampled_from(["asc", "desc"]) | texts)
        return "GET", f"/memory/threads/{tid}{tail}", query, None, headers
    if kind == "list":
        path = draw(st.sampled_from(["/memory/threads", "/memory/resources"]))
        query = {name: draw(numbers) for name in draw(st.sets(st.sampled_from(["limit", "offset"])))}
        if draw(st.booleans()):
            query["resource_id"] = draw(ids)
        return "GET", path, query, None, headers
    if kind == "search":
        return "POST", "/memory/search", {}, draw(search_bodies), headers
    if kind == "thread write":
        method, path, fields = draw(thread_writes)
        tid = quote(draw(st.one_of(st.just(SOURCE), st.just(SOURCE), good_ids, ids)), safe="")
        required = {"message_ids": message_ids} if path.endswith("/clone") else {}
        body = draw(st.fixed_dictionaries(required, optional=fields).map(msgspec.json.encode) | st.binary(max_size=32))
        return method, "/memory/threads" + path.format(tid=tid), {}, body, headers
    if kind == "admin":
        headers["authorization"] = f"Bearer {ADMIN_KEY}"
        route = draw(st.sampled_from(["create", "list", "revoke", "usage"]))
        if route == "create":
            return "POST", "/admin/keys", {}, draw(key_bodies), headers
        if route == "revoke":
            return "DELETE", f"/admin/keys/{tid}", {}, None, headers
        fields = ["tenant", "since", "until"] if route == "usage" else ["tenant"]
        query = {name: draw(ids if name == "tenant" else ages) for name in draw(st.sets(st.sampled_from(fields)))}
        return "GET", "/admin/usage" if route == "usage" else "/admin/keys", query, None, headers
    if kind == "import":
        return "POST", f"/memory/threads/{tid}/messages", {}, draw(import_bodies), headers
    what = draw(st.sampled_from(["threads", "resources"]))
    return "DELETE", f"/memory/{what}/{tid}", {}, None, headers


async def _published(url: str) -> int:
    nc = await nats.connect(url)
    try:
        return (await (nc.jetstream()).stream_info(EXCHANGE_STREAM)).state.last_seq
    finally:
        await nc.close()


def test_fuzz_the_api(make_gateway: Callable[..., GatewayProcess], fake_provider: FakeProvider) -> None:
    gateway = make_gateway(env={"MEMGATE_OBSERVER_MODEL": "local", "MEMGATE_LOG_LEVEL": "WARNING",
                                "MEMGATE_ADMIN_KEY": ADMIN_KEY}).start()
    nats_url = gateway.runtime()["nats_url"]
    published_before, calls_before = asyncio.run(_published(nats_url)), len(fake_provider.requests)
    tally: Counter[str] = Counter()

    with httpx.Client(base_url=gateway.base_url, timeout=30, headers=gateway.headers()) as http:
        source = http.post(f"/memory/threads/{SOURCE}/messages", json={"resource_id": "fuzz-user", "messages": [
            {"role": "user", "content": "I keep bees."}, {"role": "assistant", "content": "How many hives?"}]})
        assert source.status_code == 201, source.text
        tally["exchanges"] += source.json()["exchanges"]

        @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(case=cases())
        def one(case: tuple[str, str, dict[str, str], bytes | None, dict[str, str]]) -> None:
            method, path, query, body, headers = case
            response = http.request(method, path, params=query, content=body,
                                    headers={"content-type": "application/json", **headers})
            tally[f"{response.status_code // 100}xx"] += 1
            assert response.status_code < 500, (method, path, query, body and body[:200], response.text)
            if response.status_code >= 400:
                error = response.json()["error"]
                assert isinstance(error["message"], str) and error["message"], response.text
                assert isinstance(error["type"], str)
                if path == "/messages":
                    assert response.json()["type"] == "error" and set(error) == {"type", "message"}, response.text
                else:
                    assert isinstance(error["code"], (str, type(None)))
            elif path in ("/chat/completions", "/messages", "/responses"):
                tally[f"{path} answered"] += 1
                tally["provider calls"] += 1
                tally["exchanges"] += "x-thread-id" in headers
            elif method == "POST" and path.endswith(("/messages", "/clone")):
                tally["exchanges"] += response.json()["exchanges"]

        one()
    observer_idle(gateway)  # the outbox relay has published every recorded exchange

    published = asyncio.run(_published(nats_url)) - published_before
    assert tally["5xx"] == 0 and sum(tally[k] for k in ("2xx", "4xx")) >= EXAMPLES
    assert tally["4xx"] > EXAMPLES // 4 and tally["2xx"] > EXAMPLES // 20, tally  # both kinds were tried
    assert all(tally[f"{path} answered"] for path in ("/chat/completions", "/messages", "/responses")), tally
    # Nothing reached the provider or the bus but what was accepted.
    assert len(fake_provider.requests) - calls_before == tally["provider calls"], tally
    assert published == tally["exchanges"], (published, tally)
