"""Validating the chat request body and the memory headers."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from memgate_core.errors import InvalidRequest
from memgate_core.events import Usage
from memgate_edge.chat.exchange import usage_of
from memgate_edge.chat.request import (
    BUDGET_HEADER,
    MAX_CONTENT_BYTES,
    MAX_MESSAGES,
    QUERY_CHARS,
    RESOURCE_HEADER,
    THREAD_HEADER,
    MemoryScope,
    latest_user_text,
    new_turn,
    parse_chat_request,
    parse_memory_scope,
    text_of,
)
from memgate_edge.messages.translate import messages_usage

USER = {"role": "user", "content": "hi"}


def _json(obj: Any) -> bytes:
    return msgspec.json.encode(obj)


@pytest.mark.parametrize(
    ("raw", "code", "param"),
    [
        (b"", "invalid_json", None),
        (b'{"model": "\xff\xfe"}', "invalid_encoding", None),
        (b"{not json", "invalid_json", None),
        (b"[1, 2]", "invalid_json", None),
        (b'"a string"', "invalid_json", None),
        (_json({"messages": [USER]}), "missing_required_parameter", "model"),
        (_json({"model": None, "messages": [USER]}), "missing_required_parameter", "model"),
        (_json({"model": 4, "messages": [USER]}), "invalid_type", "model"),
        (_json({"model": "   ", "messages": [USER]}), "invalid_type", "model"),
        (_json({"model": "m"}), "missing_required_parameter", "messages"),
        (_json({"model": "m", "messages": []}), "invalid_type", "messages"),
        (_json({"model": "m", "messages": "hi"}), "invalid_type", "messages"),
        (_json({"model": "m", "messages": {"role": "user"}}), "invalid_type", "messages"),
        (_json({"model": "m", "messages": [{"content": "x"}]}), "invalid_type", "messages[0]"),
        (_json({"model": "m", "messages": [USER, "hello"]}), "invalid_type", "messages[1]"),
        (_json({"model": "m", "messages": [USER, {"role": 1}]}), "invalid_type", "messages[1]"),
        (_json({"model": "m", "messages": [{"role": "user", "content": 5}]}), "invalid_type", "messages[0].content"),
        (_json({"model": "m", "messages": [{"role": "user", "content": {"text": "x"}}]}), "invalid_type",
         "messages[0].content"),
        (_json({"model": "m", "messages": [USER], "stream": "yes"}), "invalid_type", "stream"),
        (_json({"model": "m", "messages": [USER], "stream": 1}), "invalid_type", "stream"),
        # Whatever would break after the turn is stored or the provider is called fails here.
        (_json({"model": "fake/a\x00b", "messages": [USER]}), "invalid_value", "model"),
        (_json({"model": "fake/\u6a21\u578b", "messages": [USER]}), "invalid_value", "model"),
        (_json({"model": "fake/a\x01b", "messages": [USER]}), "invalid_value", "model"),
        (_json({"model": "m" * 257, "messages": [USER]}), "invalid_value", "model"),
        (_json({"model": "m", "messages": [USER, {"role": "assistant", "tool_calls": 5}]}), "invalid_type",
         "messages[1].tool_calls"),
        (_json({"model": "m", "messages": [{"role": "assistant", "tool_calls": ["x"]}]}), "invalid_type",
         "messages[0].tool_calls"),
        (b'{"model": "m", "messages": ' + b"[" * 5000 + b"]" * 5000 + b"}", "invalid_json", None),
    ],
)
def test_bad_bodies(raw: bytes, code: str, param: str | None) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_chat_request(raw, {})
    err = info.value
    assert err.status == 400
    assert (err.code, err.param) == (code, param)


def test_valid_body_is_kept_whole() -> None:
    body = {"model": "openai/gpt-4o", "messages": [USER, {"role": "assistant", "content": None}],
            "stream": True, "temperature": 0.2, "tools": [{"type": "function"}]}
    request = parse_chat_request(_json(body), {})
    assert request.model == "openai/gpt-4o"
    assert request.stream is True
    assert request.body == body
    assert request.messages == body["messages"]
    assert request.memory is None


@pytest.mark.parametrize(("extra", "stream"), [({}, False), ({"stream": None}, False), ({"stream": False}, False)])
def test_stream_defaults_to_false(extra: dict[str, Any], stream: bool) -> None:
    request = parse_chat_request(_json({"model": "m", "messages": [USER], **extra}), {})
    assert request.stream is stream


def test_content_parts_are_accepted() -> None:
    content = [{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "data:..."}}]
    request = parse_chat_request(_json({"model": "m", "messages": [{"role": "user", "content": content}]}), {})
    assert request.messages[0]["content"] == content


def test_memory_headers_are_parsed_with_the_body() -> None:
    request = parse_chat_request(_json({"model": "m", "messages": [USER]}),
                                 {THREAD_HEADER: "thread-1", RESOURCE_HEADER: "user@example.com"})
    assert request.memory == MemoryScope("thread-1", "user@example.com")


def test_a_request_may_set_its_own_memory_budget() -> None:
    headers = {THREAD_HEADER: "t1", RESOURCE_HEADER: "u1"}
    assert parse_memory_scope(headers) == MemoryScope("t1", "u1", None)
    assert parse_memory_scope({**headers, BUDGET_HEADER: "1500"}) == MemoryScope("t1", "u1", 1500)
    for bad in ("0", "-5", "1e3", "abc", "", "100001", "\u00b2", "\u0663", "1" * 5000):  # (², Arabic-Indic 3)
        with pytest.raises(InvalidRequest) as info:
            parse_memory_scope({**headers, BUDGET_HEADER: bad})
        assert info.value.code == "invalid_memory_budget" and info.value.param == BUDGET_HEADER


def test_bad_memory_header_fails_the_request() -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_chat_request(_json({"model": "m", "messages": [USER]}), {THREAD_HEADER: "t1"})
    assert info.value.code == "missing_resource_id"


# ------------------------------------------------------------------ memory scope


def test_no_memory_headers_means_no_memory() -> None:
    assert parse_memory_scope({"authorization": "Bearer x"}) is None


def test_both_headers_give_a_scope() -> None:
    assert parse_memory_scope({THREAD_HEADER: "t-1", RESOURCE_HEADER: "r:1"}) == MemoryScope("t-1", "r:1")


def test_thread_without_resource() -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_memory_scope({THREAD_HEADER: "t-1"})
    assert (info.value.status, info.value.code, info.value.param) == (400, "missing_resource_id", RESOURCE_HEADER)


def test_resource_without_thread() -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_memory_scope({RESOURCE_HEADER: "r-1"})
    assert (info.value.status, info.value.code, info.value.param) == (400, "missing_thread_id", THREAD_HEADER)


@pytest.mark.parametrize(
    ("headers", "param"),
    [
        ({THREAD_HEADER: "bad id!", RESOURCE_HEADER: "r"}, THREAD_HEADER),
        ({THREAD_HEADER: "t", RESOURCE_HEADER: "../etc"}, RESOURCE_HEADER),
        ({THREAD_HEADER: "", RESOURCE_HEADER: "r"}, THREAD_HEADER),
        ({THREAD_HEADER: "t", RESOURCE_HEADER: "x" * 200}, RESOURCE_HEADER),
    ],
)
def test_invalid_ids(headers: dict[str, str], param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_memory_scope(headers)
    assert (info.value.code, info.value.param) == ("invalid_header", param)


# ------------------------------------------------------------------ text and turns


def test_text_of_string() -> None:
    assert text_of("hello") == "hello"


def test_text_of_content_parts() -> None:
    content = [
        {"type": "text", "text": "first"},
        {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
        {"type": "text", "text": "second"},
        {"type": "input_audio", "input_audio": {}},
        {"type": "file", "file": {}},
        {"type": "refusal", "refusal": "no"},
        {"type": "text", "text": 5},
        "not a dict",
    ]
    assert text_of(content) == "first\n[image_url]\nsecond\n[input_audio]\n[file]"


@pytest.mark.parametrize("content", [None, 5, {"text": "x"}, []])
def test_text_of_other_content_is_empty(content: Any) -> None:
    assert text_of(content) == ""


def test_latest_user_text() -> None:
    messages = [{"role": "user", "content": "old"}, {"role": "assistant", "content": "a"},
                {"role": "user", "content": [{"type": "text", "text": "new"}]}, {"role": "tool", "content": "t"}]
    assert latest_user_text(messages) == "new"
    assert latest_user_text([{"role": "system", "content": "s"}]) == ""


def test_new_turn_is_after_the_last_assistant_message() -> None:
    messages = [
        {"role": "system", "content": "s"},
        {"role": "user", "content": "u1"},
        {"role": "assistant", "content": "a1"},
        {"role": "user", "content": "u2"},
        {"role": "assistant", "content": None, "tool_calls": []},
        {"role": "tool", "content": "result"},
        {"role": "system", "content": "late system"},
        {"role": "developer", "content": "dev"},
        {"role": "user", "content": "u3"},
    ]
    assert new_turn(messages) == [messages[5], messages[8]]


def test_new_turn_without_assistant_takes_all_user_messages() -> None:
    messages = [{"role": "system", "content": "s"}, {"role": "user", "content": "u1"}, {"role": "user", "content": "u2"}]
    assert new_turn(messages) == messages[1:]


def test_new_turn_ending_with_assistant_is_empty() -> None:
    assert new_turn([{"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}]) == []


def test_what_one_request_may_write_to_memory_is_bounded() -> None:
    memory = {THREAD_HEADER: "t1", RESOURCE_HEADER: "r1"}
    many = [{"role": "user", "content": "x"}] * (MAX_MESSAGES + 1)
    with pytest.raises(InvalidRequest) as info:
        parse_chat_request(_json({"model": "m", "messages": many}), memory)
    assert (info.value.code, info.value.param) == ("too_many_messages", "messages")
    # The history a client resends is not written again: only the turn after the last answer counts.
    resent = [*many, {"role": "assistant", "content": "ok"}, USER]
    assert parse_chat_request(_json({"model": "m", "messages": resent}), memory).memory is not None
    big = [{"role": "user", "content": "é" * (MAX_CONTENT_BYTES // 2 + 1)}]
    with pytest.raises(InvalidRequest) as info:
        parse_chat_request(_json({"model": "m", "messages": big}), memory)
    assert info.value.code == "content_too_large"
    assert parse_chat_request(_json({"model": "m", "messages": many}), {}).memory is None  # memory off: no limit


def test_recall_reads_the_end_of_a_long_message() -> None:
    long = "background " * 2000 + "So what is my sister's name?"
    query = latest_user_text([USER, {"role": "assistant", "content": "ok"}, {"role": "user", "content": long}])
    assert len(query) == QUERY_CHARS and query.endswith("So what is my sister's name?")


@pytest.mark.parametrize("odd", [-5, True, 1.5, "12", None, 2**31, 10**30])
def test_a_providers_odd_token_counts_count_as_none(odd: Any) -> None:
    """Usage is informational: an odd count is 0 (chat) or the stream's earlier count
    (Messages), never a negative or oversized number handed on to pricing and storage."""
    assert usage_of({"usage": {"prompt_tokens": odd, "completion_tokens": 7}}) == Usage(0, 7)
    assert messages_usage({"input_tokens": odd, "output_tokens": 7}, Usage(3, 1)) == Usage(3, 7)
    assert usage_of({"usage": {"prompt_tokens": 2**31 - 1, "completion_tokens": 0}}) == Usage(2**31 - 1, 0)
