"""Anthropic's Messages API and chat completions, each into the other.

A Messages request is checked in its own terms, then translated to a chat completion body:
memory reads that (so a turn is remembered the same way whichever API it came by), and
providers without the Messages API get it. Their answers are translated back here;
`memgate_edge.messages.stream` does the same for streams.

What the translation keeps and loses is listed in docs/providers.md.
"""

from __future__ import annotations

import json
from typing import Any

from memgate_core.errors import InvalidRequest, UpstreamError
from memgate_core.events import Usage, token_count
from memgate_core.ids import new_id
from memgate_edge.chat.request import describe_tool_calls, storable, text_of

ROLES = ("user", "assistant")
# chat completions' finish_reason -> the Messages API's stop_reason
STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "function_call": "tool_use",
                "content_filter": "refusal"}
TOOL_CHOICES = {"auto": "auto", "any": "required", "none": "none"}


def check(body: dict[str, Any]) -> None:
    """What the Messages API requires, with its own parameter names in the errors."""
    max_tokens = body.get("max_tokens")
    if max_tokens is None:
        raise InvalidRequest("Missing required parameter: 'max_tokens'.", code="missing_required_parameter",
                             param="max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise InvalidRequest("'max_tokens' must be a positive integer.", code="invalid_type", param="max_tokens")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        code = "missing_required_parameter" if messages is None else "invalid_type"
        raise InvalidRequest("'messages' must be a non-empty array.", code=code, param="messages")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise InvalidRequest(f"messages[{i}] must be an object whose 'role' is 'user' or 'assistant'.",
                                 code="invalid_type", param=f"messages[{i}]")
        _check_content(message.get("content"), f"messages[{i}].content")
    system = body.get("system")
    if system is not None and not isinstance(system, str):
        _check_content(system, "system")
    tools = body.get("tools")
    if tools is not None and not (isinstance(tools, list)
                                  and all(isinstance(t, dict) and isinstance(t.get("name"), str) for t in tools)):
        raise InvalidRequest("'tools' must be an array of objects with a string 'name'.", code="invalid_type",
                             param="tools")


def _check_content(content: Any, param: str) -> None:
    if isinstance(content, str):
        return
    if not isinstance(content, list) or not all(isinstance(b, dict) and isinstance(b.get("type"), str)
                                                for b in content):
        raise InvalidRequest(f"'{param}' must be a string or an array of content blocks (objects with a 'type').",
                             code="invalid_type", param=param)


def chat_body(body: dict[str, Any]) -> dict[str, Any]:
    """The chat completion a checked Messages request amounts to."""
    messages: list[dict[str, Any]] = []
    system = body.get("system")
    if system:
        messages.append({"role": "system", "content": system if isinstance(system, str) else _text(system)})
    for message in body["messages"]:
        messages += _chat_messages(message)
    chat: dict[str, Any] = {"model": body.get("model"), "messages": messages, "max_tokens": body["max_tokens"]}
    for ours, theirs in (("temperature", "temperature"), ("top_p", "top_p"), ("stop_sequences", "stop")):
        if body.get(ours) is not None:
            chat[theirs] = body[ours]
    if "stream" in body:
        chat["stream"] = body["stream"]
        if body["stream"] is True:
            chat["stream_options"] = {"include_usage": True}
    if body.get("tools"):
        chat["tools"] = [{"type": "function", "function": {
            "name": tool["name"], "description": tool.get("description", ""),
            "parameters": tool.get("input_schema") or {"type": "object"}}} for tool in body["tools"]]
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") == "tool" and isinstance(choice.get("name"), str):
        chat["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    elif isinstance(choice, dict) and choice.get("type") in TOOL_CHOICES:
        chat["tool_choice"] = TOOL_CHOICES[choice["type"]]
    metadata = body.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("user_id"), str):
        chat["user"] = metadata["user_id"]
    return chat


def _chat_messages(message: dict[str, Any]) -> list[dict[str, Any]]:
    role, content = message["role"], message.get("content")
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    blocks: list[dict[str, Any]] = content or []
    if role == "assistant":
        calls = [{"id": b.get("id") or new_id("call"), "type": "function",
                  "function": {"name": b.get("name", ""), "arguments": json.dumps(b.get("input") or {})}}
                 for b in blocks if b["type"] == "tool_use"]
        out: dict[str, Any] = {"role": "assistant", "content": _text(blocks) or None}
        if calls:
            out["tool_calls"] = calls
        return [out]
    # A user turn: tool results answer the assistant's calls, so they come first, each a
    # tool message; what else the user sent follows as one user message.
    results = [{"role": "tool", "tool_call_id": b.get("tool_use_id", ""), "content": _tool_result_text(b)}
               for b in blocks if b["type"] == "tool_result"]
    parts = [part for b in blocks if b["type"] != "tool_result" for part in _chat_parts(b)]
    return results + ([{"role": "user", "content": parts}] if parts else [])


def _chat_parts(block: dict[str, Any]) -> list[dict[str, Any]]:
    if block["type"] == "text" and isinstance(block.get("text"), str):
        return [{"type": "text", "text": block["text"]}]
    source = block.get("source")
    if block["type"] == "image" and isinstance(source, dict):
        if source.get("type") == "base64":
            url = f"data:{source.get('media_type', 'image/png')};base64,{source.get('data', '')}"
        else:
            url = str(source.get("url", ""))
        return [{"type": "image_url", "image_url": {"url": url}}]
    if block["type"] == "document":
        return [{"type": "text", "text": "[document]"}]  # (chat completions has no place for one)
    return []  # thinking and the like: the Messages API's own


def _tool_result_text(block: dict[str, Any]) -> str:
    content = block.get("content")
    text = content if isinstance(content, str) else _text(content if isinstance(content, list) else [])
    return f"[error] {text}" if block.get("is_error") else text


def _text(blocks: list[Any]) -> str:
    return "\n".join(b["text"] for b in blocks if isinstance(b, dict) and b.get("type") == "text"
                     and isinstance(b.get("text"), str))


def with_memory(body: dict[str, Any], memory: str) -> dict[str, Any]:
    """The Messages request with the memory block ahead of the client's own system prompt."""
    if not memory:
        return body
    system = body.get("system")
    if isinstance(system, list):
        return {**body, "system": [{"type": "text", "text": memory}, *system]}
    return {**body, "system": f"{memory}\n\n{system}" if system else memory}


def message_of(data: Any, model: str) -> dict[str, Any]:
    """A chat completion as the Messages API's answer."""
    choices = data.get("choices") if isinstance(data, dict) else None
    if not choices or not isinstance(choices[0], dict) or not isinstance(choices[0].get("message"), dict):
        raise UpstreamError("The upstream provider's answer is not a chat completion memgate can translate.")
    choice, message = choices[0], choices[0]["message"]
    content: list[dict[str, Any]] = []
    text = text_of(message.get("content"))
    if text:
        content.append({"type": "text", "text": text})
    for call in message.get("tool_calls") or []:
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            content.append({"type": "tool_use", "id": call.get("id") or new_id("toolu"),
                            "name": function.get("name", ""), "input": tool_input(function.get("arguments"))})
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    return {
        "id": f"msg_{data.get('id') or new_id('chat')}", "type": "message", "role": "assistant", "model": model,
        "content": content, "stop_reason": STOP_REASONS.get(str(choice.get("finish_reason")), "end_turn"),
        "stop_sequence": None,
        "usage": {"input_tokens": usage.get("prompt_tokens") or 0, "output_tokens": usage.get("completion_tokens") or 0},
    }


def tool_input(arguments: Any) -> dict[str, Any]:
    """A tool call's JSON arguments as the object the Messages API has (kept under `arguments`
    when they are not one)."""
    try:
        parsed = json.loads(arguments) if isinstance(arguments, str) and arguments else {}
    except ValueError:
        parsed = None
    return parsed if isinstance(parsed, dict) else {"arguments": arguments}


def messages_answer(data: Any) -> tuple[str, Usage | None]:
    """The assistant's answer as memgate remembers it, and the usage, from a Messages API answer."""
    if not isinstance(data, dict) or not isinstance(data.get("content"), list):
        return "", None
    blocks = data["content"]
    calls = [(b.get("name", "?"), json.dumps(b.get("input", {}))) for b in blocks
             if isinstance(b, dict) and b.get("type") == "tool_use"]
    text = "\n".join(filter(None, [_text(blocks), describe_tool_calls(calls) if calls else ""]))
    return storable(text), messages_usage(data.get("usage"))


def messages_usage(usage: Any, earlier: Usage | None = None) -> Usage | None:
    """Usage from the Messages API's `usage` (a stream's later counts update its earlier ones)."""
    if not isinstance(usage, dict):
        return earlier
    prompt, completion = (token_count(usage.get(name)) for name in ("input_tokens", "output_tokens"))
    base = earlier or Usage(0, 0)
    return Usage(base.prompt_tokens if prompt is None else prompt,
                 base.completion_tokens if completion is None else completion)
