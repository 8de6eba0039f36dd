"""OpenAI's Responses API to and from chat completions, requests, answers and streams."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from helpers import sse_events

from memgate_core.errors import InvalidRequest, UpstreamError
from memgate_core.events import Usage
from memgate_edge.responses import translate
from memgate_edge.responses.stream import ChatAsResponses


def test_a_request_with_every_kind_of_item_becomes_the_chat_completion_it_means() -> None:
    body = {
        "model": "fake/m", "instructions": "Be brief.", "max_output_tokens": 50, "temperature": 0.3,
        "stream": True, "user": "u-1", "reasoning": {"effort": "low"}, "parallel_tool_calls": False,
        "tool_choice": {"type": "function", "name": "f"},
        "text": {"format": {"type": "json_schema", "name": "out", "schema": {"type": "object"}, "strict": True}},
        "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}, "strict": True}],
        "input": [
            {"role": "developer", "content": "Use metric units."},
            {"type": "message", "role": "user", "content": [
                {"type": "input_text", "text": "Weather?"},
                {"type": "input_image", "image_url": "https://img.example/a.png", "detail": "low"}]},
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]},
            {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": '{"a": 1}'},
            {"type": "function_call", "call_id": "call_2", "name": "f", "arguments": '{"a": 2}'},
            {"type": "function_call_output", "call_id": "call_1", "output": "one"},
            {"type": "function_call_output", "call_id": "call_2", "output": [{"type": "input_text", "text": "two"}]},
        ],
    }
    translate.check(body)
    chat = translate.chat_body(body)
    assert chat["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "system", "content": "Use metric units."},
        {"role": "user", "content": [{"type": "text", "text": "Weather?"},
                                     {"type": "image_url", "image_url": {"url": "https://img.example/a.png",
                                                                         "detail": "low"}}]},
        {"role": "assistant", "content": "Checking."},
        {"role": "assistant", "content": None, "tool_calls": [  # parallel calls: one assistant message
            {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}},
            {"id": "call_2", "type": "function", "function": {"name": "f", "arguments": '{"a": 2}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "one"},
        {"role": "tool", "tool_call_id": "call_2", "content": "two"},
    ]
    assert (chat["max_tokens"], chat["temperature"], chat["user"], chat["reasoning_effort"]) == (50, 0.3, "u-1", "low")
    assert chat["stream"] is True and chat["stream_options"] == {"include_usage": True}
    assert chat["parallel_tool_calls"] is False
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "f"}}
    assert chat["tools"] == [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"},
                                                               "strict": True}}]
    assert chat["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "out", "schema": {"type": "object"}, "strict": True}}
    assert translate.chat_body({"model": "m", "input": "hi"})["messages"] == [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(("body", "param"), [
    ({}, "input"),
    ({"input": []}, "input"),
    ({"input": 5}, "input"),
    ({"input": "hi", "previous_response_id": "resp_1"}, "previous_response_id"),
    ({"input": "hi", "background": True}, "background"),
    ({"input": [7]}, "input[0]"),
    ({"input": [{"role": "robot", "content": "hi"}]}, "input[0].role"),
    ({"input": [{"role": "user", "content": 5}]}, "input[0].content"),
    ({"input": [{"type": "function_call", "call_id": "c"}]}, "input[0]"),
    ({"input": [{"type": "function_call_output"}]}, "input[0]"),
    ({"input": [{"type": "web_search_call"}]}, "input[0]"),
    ({"input": "hi", "tools": {"type": "function"}}, "tools"),
    ({"input": "hi", "tools": [{"type": "file_search"}]}, "tools[0]"),
])
def test_what_cannot_be_translated_is_refused_in_the_requests_terms(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as failed:
        translate.check(body)
    assert failed.value.param == param


def test_a_chat_completion_answers_as_a_response() -> None:
    completion = {"usage": {"prompt_tokens": 7, "completion_tokens": 3}, "choices": [{
        "finish_reason": "length", "message": {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}]}}]}
    request = {"model": "fake/m", "input": "hi", "instructions": "Be brief.", "temperature": 0.2}
    response = translate.response_of(completion, request, "fake/m")
    message, call = response["output"]
    assert message["type"] == "message" and message["content"] == [
        {"type": "output_text", "text": "Checking.", "annotations": []}]
    assert {k: call[k] for k in ("type", "call_id", "name", "arguments", "status")} == {
        "type": "function_call", "call_id": "call_1", "name": "f", "arguments": '{"a": 1}', "status": "completed"}
    assert response["status"] == "incomplete" and response["incomplete_details"] == {"reason": "max_output_tokens"}
    assert (response["instructions"], response["temperature"], response["tools"]) == ("Be brief.", 0.2, [])
    assert response["usage"]["total_tokens"] == 10 and response["object"] == "response"
    with pytest.raises(UpstreamError):
        translate.response_of({"choices": [{}]}, request, "fake/m")


def _chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    return b"data: " + msgspec.json.encode({"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}) + b"\n\n"


def test_a_chat_stream_is_told_as_the_responses_event_sequence() -> None:
    form = ChatAsResponses({"model": "fake/m", "input": "hi"}, "fake/m")
    out = b""
    for chunk in [_chunk({"role": "assistant", "content": "It is "}), _chunk({"content": "sunny."}),
                  _chunk({"tool_calls": [{"index": 0, "id": "call_1", "function": {"name": "f", "arguments": '{"a"'}}]}),
                  _chunk({"tool_calls": [{"index": 0, "function": {"arguments": ": 1}"}}]}, "tool_calls"),
                  b'data: {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 6}}\n\n']:
        now, end = form.translate(chunk)
        assert end == b""
        out += now
    now, end = form.translate(b"data: [DONE]\n\n")
    events = sse_events(out + now + end)
    assert [e["type"] for e in events] == [
        "response.created", "response.in_progress",
        "response.output_item.added", "response.content_part.added", "response.output_text.delta",
        "response.output_text.delta", "response.output_text.done", "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.delta", "response.function_call_arguments.done",
        "response.output_item.done", "response.completed"]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert sse_events(end)[0]["type"] == "response.completed"  # the end marker, held until the exchange is recorded
    assert events[6]["text"] == "It is sunny." and events[12]["arguments"] == '{"a": 1}'
    completed = events[-1]["response"]
    assert completed["id"] == events[0]["response"]["id"] and completed["status"] == "completed"
    assert [item["id"] for item in completed["output"]] == [events[2]["item"]["id"], events[9]["item"]["id"]]
    assert completed["output"][0]["content"][0]["text"] == "It is sunny."
    assert completed["usage"]["input_tokens"] == 5 and completed["usage"]["output_tokens"] == 6
    assert form.text == 'It is sunny.\n[called f({"a": 1})]' and form.usage == Usage(5, 6)
    error = sse_events(form.error_event("gone", "upstream_error", "upstream_error"))[0]
    assert error == {"type": "error", "sequence_number": len(events), "code": "upstream_error", "message": "gone",
                     "param": None}
