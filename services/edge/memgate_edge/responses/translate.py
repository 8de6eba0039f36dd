"""OpenAI's Responses API and chat completions, each into the other.

A Responses request is checked in its own terms, then translated to a chat completion body,
which memory reads (so a turn is remembered the same way whichever API it came by) and
every provider gets; answers are translated back here, streams in `.stream`.

memgate keeps conversations in its own memory (x-thread-id), not as stored responses:
`previous_response_id` is refused with a message that says so. What else the translation
keeps and loses is listed in docs/providers.md.
"""

from __future__ import annotations

import time
from typing import Any

from memgate_core.errors import InvalidRequest, UpstreamError
from memgate_core.ids import new_id
from memgate_edge.chat.request import text_of

ROLES = ("user", "assistant", "system", "developer")
# chat completions' finish_reason -> the Responses API's (status, incomplete reason)
INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}
# Sampling and tool settings a response echoes back, with their defaults.
ECHOED: dict[str, Any] = {"instructions": None, "max_output_tokens": None, "metadata": {}, "parallel_tool_calls": True,
          "temperature": None, "tool_choice": "auto", "tools": [], "top_p": None, "user": None}


def check(body: dict[str, Any]) -> None:
    """What the Responses API requires, and what memgate cannot give through chat completions."""
    if body.get("previous_response_id") is not None:
        raise InvalidRequest(
            "'previous_response_id' is not supported: memgate does not store responses. Send x-thread-id and "
            "x-resource-id, and memgate remembers the conversation for you (or send the history in 'input').",
            code="unsupported_parameter", param="previous_response_id")
    for name in ("conversation", "prompt", "background"):
        if body.get(name):
            raise InvalidRequest(f"'{name}' is not supported by memgate's Responses API.",
                                 code="unsupported_parameter", param=name)
    items = body.get("input")
    if items is None:
        raise InvalidRequest("Missing required parameter: 'input'.", code="missing_required_parameter", param="input")
    if not isinstance(items, str) and not (isinstance(items, list) and items):
        raise InvalidRequest("'input' must be a string or a non-empty array of items.", code="invalid_type",
                             param="input")
    for i, item in enumerate(items if isinstance(items, list) else []):
        _check_item(item, f"input[{i}]")
    if body.get("tools") is not None and not isinstance(body["tools"], list):
        raise InvalidRequest("'tools' must be an array.", code="invalid_type", param="tools")
    for i, tool in enumerate(body.get("tools") or []):
        if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(tool.get("name"), str):
            kind = tool.get("type") if isinstance(tool, dict) else None
            raise InvalidRequest(f"tools[{i}]: only function tools are supported (memgate translates the Responses "
                                 f"API to chat completions, which have no built-in '{kind}' tool).",
                                 code="unsupported_tool", param=f"tools[{i}]")


def _check_item(item: Any, param: str) -> None:
    if not isinstance(item, dict):
        raise InvalidRequest(f"{param} must be an object.", code="invalid_type", param=param)
    kind = item.get("type", "message")
    if kind == "message":
        if item.get("role") not in ROLES:
            raise InvalidRequest(f"{param}.role must be one of {', '.join(ROLES)}.", code="invalid_value",
                                 param=f"{param}.role")
        content = item.get("content")
        if not isinstance(content, str) and not (
                isinstance(content, list) and all(isinstance(p, dict) and isinstance(p.get("type"), str)
                                                  for p in content)):
            raise InvalidRequest(f"{param}.content must be a string or an array of content parts.",
                                 code="invalid_type", param=f"{param}.content")
    elif kind == "function_call":
        if not all(isinstance(item.get(k), str) for k in ("call_id", "name", "arguments")):
            raise InvalidRequest(f"{param}: a function_call needs string 'call_id', 'name' and 'arguments'.",
                                 code="invalid_type", param=param)
    elif kind == "function_call_output":
        if not isinstance(item.get("call_id"), str):
            raise InvalidRequest(f"{param}: a function_call_output needs a string 'call_id'.", code="invalid_type",
                                 param=param)
    elif kind != "reasoning":  # (a model's own reasoning: chat completions has no place for it)
        raise InvalidRequest(f"{param}: items of type '{kind}' are not supported.", code="unsupported_value",
                             param=param)


def chat_body(body: dict[str, Any]) -> dict[str, Any]:
    """The chat completion a checked Responses request amounts to."""
    messages: list[dict[str, Any]] = []
    if isinstance(body.get("instructions"), str) and body["instructions"]:
        messages.append({"role": "system", "content": body["instructions"]})
    items = body["input"]
    for item in [{"role": "user", "content": items}] if isinstance(items, str) else items:
        _add_item(messages, item)
    chat: dict[str, Any] = {"model": body.get("model"), "messages": messages}
    for ours, theirs in (("max_output_tokens", "max_tokens"), ("temperature", "temperature"), ("top_p", "top_p"),
                         ("parallel_tool_calls", "parallel_tool_calls"), ("user", "user"), ("stream", "stream")):
        if body.get(ours) is not None:
            chat[theirs] = body[ours]
    if body.get("stream") is True:
        chat["stream_options"] = {"include_usage": True}
    if body.get("tools"):
        chat["tools"] = [{"type": "function", "function": {
            k: v for k, v in tool.items() if k in ("name", "description", "parameters", "strict")}}
            for tool in body["tools"]]
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") == "function":
        chat["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
    elif choice is not None:
        chat["tool_choice"] = choice
    reasoning = body.get("reasoning")
    if isinstance(reasoning, dict) and reasoning.get("effort"):
        chat["reasoning_effort"] = reasoning["effort"]
    text = body.get("text")
    form = text.get("format") if isinstance(text, dict) else None
    if isinstance(form, dict) and form.get("type") == "json_schema":
        chat["response_format"] = {"type": "json_schema", "json_schema": {
            k: v for k, v in form.items() if k in ("name", "schema", "strict", "description")}}
    elif isinstance(form, dict) and form.get("type") == "json_object":
        chat["response_format"] = {"type": "json_object"}
    return chat


def _add_item(messages: list[dict[str, Any]], item: dict[str, Any]) -> None:
    kind = item.get("type", "message")
    if kind == "message":
        role = "system" if item["role"] == "developer" else item["role"]
        content = item["content"]
        if isinstance(content, list):
            parts = [part for p in content for part in _chat_parts(p)]
            content = text_of(parts) if role != "user" else parts
        messages.append({"role": role, "content": content})
    elif kind == "function_call":
        call = {"id": item["call_id"], "type": "function",
                "function": {"name": item["name"], "arguments": item["arguments"]}}
        last = messages[-1] if messages else None
        if last is not None and last["role"] == "assistant" and "tool_calls" in last:
            last["tool_calls"].append(call)  # parallel calls: one assistant message
        else:
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
    elif kind == "function_call_output":
        output = item.get("output")
        messages.append({"role": "tool", "tool_call_id": item["call_id"],
                         "content": output if isinstance(output, str) else text_of(_output_parts(output))})


def _chat_parts(part: dict[str, Any]) -> list[dict[str, Any]]:
    if part["type"] in ("input_text", "output_text", "text") and isinstance(part.get("text"), str):
        return [{"type": "text", "text": part["text"]}]
    if part["type"] == "input_image" and isinstance(part.get("image_url"), str):
        image: dict[str, Any] = {"url": part["image_url"]}
        if part.get("detail") in ("low", "high", "auto"):
            image["detail"] = part["detail"]
        return [{"type": "image_url", "image_url": image}]
    if part["type"] == "input_file":
        return [{"type": "text", "text": "[file]"}]
    return []


def _output_parts(output: Any) -> list[dict[str, Any]]:
    return [p for part in output if isinstance(part, dict) and isinstance(part.get("type"), str)
            for p in _chat_parts(part)] if isinstance(output, list) else []


def response_of(data: Any, request: dict[str, Any], model: str) -> dict[str, Any]:
    """A chat completion as the Responses API's answer to `request`."""
    choices = data.get("choices") if isinstance(data, dict) else None
    if not choices or not isinstance(choices[0], dict) or not isinstance(choices[0].get("message"), dict):
        raise UpstreamError("The upstream provider's answer is not a chat completion memgate can translate.")
    message = choices[0]["message"]
    output: list[dict[str, Any]] = []
    text = text_of(message.get("content"))
    if text:
        output.append(message_item(new_id("msg"), text))
    for call in message.get("tool_calls") or []:
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            output.append(call_item(new_id("fc"), str(call.get("id") or new_id("call")),
                                    str(function.get("name", "")), str(function.get("arguments") or "")))
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    return response(new_id("resp"), request, model, output, finish_reason=choices[0].get("finish_reason"),
                    usage=(usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0))


def response(response_id: str, request: dict[str, Any], model: str, output: list[dict[str, Any]], *,
             finish_reason: Any = "stop", usage: tuple[int, int] | None = None,
             status: str = "completed") -> dict[str, Any]:
    """A response object (`usage`: input and output tokens, None while in progress)."""
    incomplete = INCOMPLETE.get(str(finish_reason)) if status == "completed" else None
    body: dict[str, Any] = {
        "id": response_id, "object": "response", "created_at": int(time.time()), "model": model,
        "status": "incomplete" if incomplete else status, "output": output, "error": None,
        "incomplete_details": {"reason": incomplete} if incomplete else None,
        "previous_response_id": None, "text": request.get("text") or {"format": {"type": "text"}},
        **{name: request[name] if request.get(name) is not None else default
           for name, default in ECHOED.items()},
        "usage": None,
    }
    if usage is not None:
        body["usage"] = {"input_tokens": usage[0], "output_tokens": usage[1], "total_tokens": usage[0] + usage[1],
                         "input_tokens_details": {"cached_tokens": 0},
                         "output_tokens_details": {"reasoning_tokens": 0}}
    return body


def message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    return {"type": "message", "id": item_id, "status": status, "role": "assistant",
            "content": [output_text(text)] if status == "completed" else []}


def output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": []}


def call_item(item_id: str, call_id: str, name: str, arguments: str, status: str = "completed") -> dict[str, Any]:
    return {"type": "function_call", "id": item_id, "call_id": call_id, "name": name, "arguments": arguments,
            "status": status}
