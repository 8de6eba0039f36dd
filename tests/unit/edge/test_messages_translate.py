"""Anthropic's Messages API to and from chat completions, requests, answers and streams."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from helpers import sse_events

from memgate_core.errors import InvalidRequest, UpstreamError
from memgate_core.events import Usage
from memgate_edge.messages import translate
from memgate_edge.messages.stream import ChatAsMessages, MessagesStream


def test_a_request_with_every_kind_of_block_becomes_the_chat_completion_it_means() -> None:
    body = {
        "model": "fake/m", "max_tokens": 50, "temperature": 0.2, "stop_sequences": ["END"], "stream": True,
        "system": [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Be kind."}],
        "metadata": {"user_id": "u-1"}, "tool_choice": {"type": "tool", "name": "get_weather"},
        "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Weather?"},
                                         {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                                      "data": "iVBOR"}}]},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "hm"}, {"type": "text", "text": "Let me see."},
                                              {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                                               "input": {"city": "Oslo"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "is_error": True,
                                          "content": [{"type": "text", "text": "no data"}]},
                                         {"type": "text", "text": "Try again."}]},
        ],
    }
    translate.check(body)
    chat = translate.chat_body(body)
    assert chat["messages"] == [
        {"role": "system", "content": "Be brief.\nBe kind."},
        {"role": "user", "content": [{"type": "text", "text": "Weather?"},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}}]},
        {"role": "assistant", "content": "Let me see.", "tool_calls": [
            {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "[error] no data"},
        {"role": "user", "content": [{"type": "text", "text": "Try again."}]},
    ]
    assert chat["max_tokens"] == 50 and chat["temperature"] == 0.2 and chat["stop"] == ["END"]
    assert chat["stream"] is True and chat["stream_options"] == {"include_usage": True}
    assert chat["user"] == "u-1"
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert chat["tools"][0]["function"]["parameters"] == {"type": "object"}


@pytest.mark.parametrize(("body", "param"), [
    ({"messages": [{"role": "user", "content": "hi"}]}, "max_tokens"),
    ({"max_tokens": 0, "messages": [{"role": "user", "content": "hi"}]}, "max_tokens"),
    ({"max_tokens": True, "messages": [{"role": "user", "content": "hi"}]}, "max_tokens"),
    ({"max_tokens": 5}, "messages"),
    ({"max_tokens": 5, "messages": [{"role": "tool", "content": "hi"}]}, "messages[0]"),
    ({"max_tokens": 5, "messages": [{"role": "user", "content": [{"text": "no type"}]}]}, "messages[0].content"),
    ({"max_tokens": 5, "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ({"max_tokens": 5, "messages": [{"role": "user", "content": "hi"}], "system": 7}, "system"),
    ({"max_tokens": 5, "messages": [{"role": "user", "content": "hi"}], "tools": [{"no": "name"}]}, "tools"),
])
def test_what_the_messages_api_requires_is_checked_in_its_terms(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as failed:
        translate.check(body)
    assert failed.value.param == param


def test_memory_goes_ahead_of_the_clients_system_prompt_in_either_form() -> None:
    body: dict[str, Any] = {"messages": []}
    assert translate.with_memory(body, "")["messages"] is body["messages"]
    assert translate.with_memory(body, "MEM")["system"] == "MEM"
    assert translate.with_memory({**body, "system": "Mine."}, "MEM")["system"] == "MEM\n\nMine."
    blocks = translate.with_memory({**body, "system": [{"type": "text", "text": "Mine."}]}, "MEM")["system"]
    assert blocks == [{"type": "text", "text": "MEM"}, {"type": "text", "text": "Mine."}]


def test_a_chat_completion_answers_as_a_message() -> None:
    completion = {"id": "chatcmpl-1", "usage": {"prompt_tokens": 7, "completion_tokens": 3}, "choices": [{
        "finish_reason": "tool_calls", "message": {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}},
            {"id": "call_2", "type": "function", "function": {"name": "broken", "arguments": "not json"}}]}}]}
    message = translate.message_of(completion, "fake/m")
    assert message["content"] == [
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Oslo"}},
        {"type": "tool_use", "id": "call_2", "name": "broken", "input": {"arguments": "not json"}},
    ]
    assert (message["stop_reason"], message["model"], message["type"]) == ("tool_use", "fake/m", "message")
    assert message["usage"] == {"input_tokens": 7, "output_tokens": 3}
    with pytest.raises(UpstreamError):
        translate.message_of({"choices": []}, "fake/m")


def test_a_native_answer_is_remembered_with_its_tool_calls() -> None:
    answer = {"content": [{"type": "text", "text": "On it.\x00"}, {"type": "tool_use", "name": "f", "input": {"a": 1}}],
              "usage": {"input_tokens": 9, "output_tokens": 4}}
    assert translate.messages_answer(answer) == ('On it.\ufffd\n[called f({"a": 1})]', Usage(9, 4))
    assert translate.messages_answer("not a message") == ("", None)


def _chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
    return b"data: " + msgspec.json.encode(
        {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}) + b"\n\n"


def test_a_chat_stream_is_told_as_the_messages_event_sequence() -> None:
    form = ChatAsMessages("fake/m")
    out = b""
    for chunk in [_chunk({"role": "assistant", "content": "It is "}), _chunk({"content": "sunny."}),
                  _chunk({"tool_calls": [{"index": 0, "id": "call_1", "function": {"name": "f", "arguments": '{"a"'}}]}),
                  _chunk({"tool_calls": [{"index": 0, "function": {"arguments": ": 1}"}}]}, "tool_calls"),
                  b'data: {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 6}}\n\n',
                  b": keep-alive\n\n"]:
        now, end = form.translate(chunk)
        assert end == b""
        out += now
    now, end = form.translate(b"data: [DONE]\n\n")
    events = sse_events(out + now + end)
    assert [e["type"] for e in events] == [
        "message_start", "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
        "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
        "message_delta", "message_stop"]
    assert sse_events(end) == [{"type": "message_stop"}]  # the end marker, held until the exchange is recorded
    assert events[1]["content_block"] == {"type": "text", "text": ""}
    assert events[5]["content_block"] == {"type": "tool_use", "id": "call_1", "name": "f", "input": {}}
    assert [e["index"] for e in events[1:9]] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert "".join(e["delta"]["partial_json"] for e in events[6:8]) == '{"a": 1}'
    assert events[9]["delta"]["stop_reason"] == "tool_use"
    assert events[9]["usage"] == {"input_tokens": 5, "output_tokens": 6}
    assert form.text == 'It is sunny.\n[called f({"a": 1})]' and form.usage == Usage(5, 6)


def test_a_native_stream_passes_through_and_is_collected() -> None:
    form = MessagesStream()
    events = [
        {"type": "message_start", "message": {"usage": {"input_tokens": 11, "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi "}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "there"}},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "name": "f", "input": {}}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{}"}},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 8}},
    ]
    for data in events:
        raw = b"event: " + data["type"].encode() + b"\ndata: " + msgspec.json.encode(data) + b"\n\n"
        assert form.translate(raw) == (raw, b"")
    stop = b'event: message_stop\ndata: {"type": "message_stop"}\n\n'
    assert form.translate(stop) == (b"", stop)
    assert form.text == "Hi there\n[called f({})]" and form.usage == Usage(11, 8)
    assert sse_events(form.error_event("gone", "upstream_error", "upstream_error")) == [
        {"type": "error", "error": {"type": "api_error", "message": "gone"}}]
