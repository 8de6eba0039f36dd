"""The Anthropic Messages API side of the fake provider, as pure functions.

A Messages request is translated into a chat-completions body so `_replies.compose_reply`
(and any responder) decides the answer exactly as for the OpenAI route; the `Reply` is
then dressed as an Anthropic `message` object or its stream of events.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from memgate_testing.fake_provider._replies import Reply, ToolCall, pieces

_STOP_REASONS = {"stop": "end_turn", "tool_calls": "tool_use", "length": "max_tokens"}
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}
_JSON_PIECE = 16  # characters per input_json_delta: enough pieces to exercise a client's buffering


# ----------------------------------------------------------------- errors


def error_type(status: int) -> str:
    if status in _ERROR_TYPES:
        return _ERROR_TYPES[status]
    return "api_error" if status >= 500 else "invalid_request_error"


def error(status: int, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type(status), "message": message}}


def invalid(body: Any) -> str | None:
    """Why a Messages request body is unacceptable, or None."""
    if not isinstance(body, dict):
        return "The request body must be a JSON object."
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "model: Field required"
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool):
        return "max_tokens: Field required"
    if max_tokens < 1:
        return "max_tokens: Input should be greater than or equal to 1"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: Field required (a non-empty array)"
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            return f"messages.{index}: expected an object with role 'user' or 'assistant'"
        if not isinstance(message.get("content"), str | list):
            return f"messages.{index}.content: expected a string or an array of content blocks"
    return None


# ----------------------------------------------------------------- request -> chat body


def to_chat(body: dict[str, Any]) -> dict[str, Any]:
    """The chat-completions body that `compose_reply` reads; `body` has passed `invalid`."""
    messages: list[dict[str, Any]] = []
    system = _text(body.get("system"))
    if system:
        messages.append({"role": "system", "content": system})
    for message in body["messages"]:
        messages += _chat_messages(message["role"], message["content"])
    chat: dict[str, Any] = {"model": body["model"], "messages": messages, "max_tokens": body["max_tokens"]}
    tools = [_chat_tool(tool) for tool in body.get("tools") or () if isinstance(tool, dict)]
    if tools:
        chat["tools"] = tools
    tool_choice = _chat_tool_choice(body.get("tool_choice"))
    if tool_choice is not None:
        chat["tool_choice"] = tool_choice
    if body.get("stream") is True:
        chat["stream"] = True
    return chat


def _text(content: Any) -> str:
    """A string, or the `text` blocks of a block list joined by newlines."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    return "\n".join(
        block["text"]
        for block in content
        if isinstance(block, dict) and block.get("type") == "text" and isinstance(block.get("text"), str)
    )


def _blocks(content: Any, kind: str) -> list[dict[str, Any]]:
    if not isinstance(content, list):
        return []
    return [block for block in content if isinstance(block, dict) and block.get("type") == kind]


def _chat_messages(role: str, content: Any) -> list[dict[str, Any]]:
    """One Anthropic message as chat messages: tool results first (OpenAI wants them right
    after the assistant's tool calls, as Anthropic wants them first in the user turn)."""
    out: list[dict[str, Any]] = [
        {"role": "tool", "tool_call_id": str(block.get("tool_use_id", "")), "content": _text(block.get("content"))}
        for block in _blocks(content, "tool_result")
    ]
    text = _text(content)
    images = [part for part in map(_image_part, _blocks(content, "image")) if part is not None]
    calls = [_chat_tool_call(block) for block in _blocks(content, "tool_use")]
    message: dict[str, Any] = {"role": role, "content": text}
    if images:
        message["content"] = [*([{"type": "text", "text": text}] if text else []), *images]
    if calls and role == "assistant":
        message["content"] = text or None
        message["tool_calls"] = calls
    # A user turn holding only tool results is fully carried by the tool messages.
    if not out or text or images or (calls and role == "assistant"):
        out.append(message)
    return out


def _image_part(block: dict[str, Any]) -> dict[str, Any] | None:
    source = block.get("source")
    if not isinstance(source, dict):
        return None
    if source.get("type") == "base64":
        url = f"data:{source.get('media_type', 'image/png')};base64,{source.get('data', '')}"
    elif source.get("type") == "url" and isinstance(source.get("url"), str):
        url = source["url"]
    else:
        return None
    return {"type": "image_url", "image_url": {"url": url}}


def _chat_tool_call(block: dict[str, Any]) -> dict[str, Any]:
    arguments = json.dumps(block.get("input") or {}, separators=(",", ":"))
    function = {"name": str(block.get("name", "")), "arguments": arguments}
    return {"id": str(block.get("id", "")), "type": "function", "function": function}


def _chat_tool(tool: dict[str, Any]) -> dict[str, Any]:
    function: dict[str, Any] = {"name": str(tool.get("name") or "tool")}
    if isinstance(tool.get("description"), str):
        function["description"] = tool["description"]
    function["parameters"] = tool.get("input_schema") or {"type": "object", "properties": {}}
    return {"type": "function", "function": function}


def _chat_tool_choice(choice: Any) -> Any:
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind == "tool":
        return {"type": "function", "function": {"name": choice.get("name")}}
    return {"auto": "auto", "any": "required", "none": "none"}.get(kind) if kind else None


# ----------------------------------------------------------------- reply -> message / events


def new_message_id() -> str:
    return "msg_fake" + secrets.token_hex(10)


def tool_use_id(call: ToolCall) -> str:
    return "toolu_" + call.id.removeprefix("call_")


def _input(call: ToolCall) -> dict[str, Any]:
    try:
        parsed = json.loads(call.arguments)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def stop_reason(reply: Reply) -> str:
    return _STOP_REASONS.get(reply.finish_reason, "end_turn")


def message(reply: Reply, model: str, message_id: str | None = None) -> dict[str, Any]:
    """A non-streaming Messages response."""
    content: list[dict[str, Any]] = []
    if reply.text is not None:
        content.append({"type": "text", "text": reply.text})
    if reply.tool_call is not None:
        call = reply.tool_call
        content.append({"type": "tool_use", "id": tool_use_id(call), "name": call.name, "input": _input(call)})
    return {
        "id": message_id or new_message_id(),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(reply),
        "stop_sequence": None,
        "usage": {"input_tokens": reply.prompt_tokens, "output_tokens": reply.completion_tokens},
    }


def events(reply: Reply, model: str, message_id: str | None = None) -> list[dict[str, Any]]:
    """The stream's events in Anthropic's order; each carries its event name as `type`."""
    head = {**message(reply, model, message_id), "content": [], "stop_reason": None}
    head["usage"] = {"input_tokens": reply.prompt_tokens, "output_tokens": 1}
    out: list[dict[str, Any]] = [{"type": "message_start", "message": head}, {"type": "ping"}]
    blocks: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    if reply.text is not None:
        deltas = [{"type": "text_delta", "text": piece} for piece in pieces(reply.text)]
        blocks.append(({"type": "text", "text": ""}, deltas))
    if reply.tool_call is not None:
        call = reply.tool_call
        arguments = call.arguments
        deltas = [
            {"type": "input_json_delta", "partial_json": arguments[i : i + _JSON_PIECE]}
            for i in range(0, len(arguments), _JSON_PIECE)
        ]
        blocks.append(({"type": "tool_use", "id": tool_use_id(call), "name": call.name, "input": {}}, deltas))
    for index, (start, deltas) in enumerate(blocks):
        out.append({"type": "content_block_start", "index": index, "content_block": start})
        out += [{"type": "content_block_delta", "index": index, "delta": delta} for delta in deltas]
        out.append({"type": "content_block_stop", "index": index})
    out.append(
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason(reply), "stop_sequence": None},
            "usage": {"output_tokens": reply.completion_tokens},
        }
    )
    out.append({"type": "message_stop"})
    return out
