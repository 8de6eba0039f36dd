"""What the fake provider answers, and the OpenAI-shaped objects that carry the answer.

Pure functions over the parsed request body: no I/O, no state. The app decides *when*
to answer; this module decides *what*.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# A responder may replace the default answer text: return None to keep the default.
Responder = Callable[[dict[str, Any]], "str | None"]

_NAME_STATEMENT = re.compile(r"\bmy name is (\w+)", re.IGNORECASE)
_NAME_QUESTION = "what is my name"
_PIECES = re.compile(r"\S+\s*|\s+")


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str = "{}"


@dataclass(frozen=True, slots=True)
class Reply:
    """One assistant turn: either text or a single tool call."""

    text: str | None
    tool_call: ToolCall | None
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int

    @property
    def usage(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }


def message_text(message: Any) -> str:
    """The text of one chat message; content may be a string or a list of parts."""
    if not isinstance(message, dict):
        return ""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [
            part.get("text", "")
            for part in content
            if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)
        ]
        return " ".join(texts)
    return ""


def count_words(text: str) -> int:
    return len(text.split())


def default_answer(messages: list[Any]) -> str:
    """`Your name is X.` when asked and a message told the name; else an echo."""
    last_user = next((m for m in reversed(messages) if isinstance(m, dict) and m.get("role") == "user"), None)
    question = message_text(last_user)
    if _NAME_QUESTION in question.lower():
        name = _latest_name(messages)
        if name:
            return f"Your name is {name[:1].upper()}{name[1:]}."
    return "fake answer to: " + question


def _latest_name(messages: list[Any]) -> str | None:
    for message in reversed(messages):
        found = _NAME_STATEMENT.findall(message_text(message))
        if found:
            return str(found[-1])
    return None


def _tool_to_call(body: dict[str, Any]) -> str | None:
    """The first tool's name when the request should end in a tool call."""
    tools = body.get("tools")
    if not isinstance(tools, list) or not tools or body.get("tool_choice") == "none":
        return None
    messages = body["messages"]
    if isinstance(messages[-1], dict) and messages[-1].get("role") == "tool":
        return None
    first: dict[str, Any] = tools[0] if isinstance(tools[0], dict) else {}
    function = first.get("function")
    return str(function.get("name") or "tool") if isinstance(function, dict) else "tool"


def compose_reply(body: dict[str, Any], fixed_reply: str | None, responder: Responder | None) -> Reply:
    """Decide the answer: tool call rule, then fixed reply, responder, default answer."""
    messages = body["messages"]
    prompt_tokens = max(1, sum(count_words(message_text(m)) for m in messages))
    tool_name = _tool_to_call(body)
    if tool_name is not None:
        call = ToolCall(id="call_" + secrets.token_hex(12), name=tool_name)
        return Reply(None, call, "tool_calls", prompt_tokens, 1)
    text = fixed_reply
    if text is None and responder is not None:
        text = responder(body)
    if text is None:
        text = default_answer(messages)
    finish_reason = "stop"
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    if isinstance(limit, int) and limit > 0 and count_words(text) > limit:
        text = "".join(pieces(text)[:limit]).rstrip()
        finish_reason = "length"
    return Reply(text, None, finish_reason, prompt_tokens, count_words(text))


def pieces(text: str) -> list[str]:
    """`text` cut into word-sized stream pieces that join back to it."""
    return _PIECES.findall(text)


def new_completion_id() -> str:
    return "chatcmpl-" + secrets.token_hex(12)


def completion(reply: Reply, model: str, completion_id: str | None = None) -> dict[str, Any]:
    """A non-streaming `chat.completion` object."""
    message: dict[str, Any] = {"role": "assistant", "content": reply.text, "refusal": None}
    if reply.tool_call is not None:
        call = reply.tool_call
        message["tool_calls"] = [
            {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}
        ]
    return {
        "id": completion_id or new_completion_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_fake",
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": reply.finish_reason}],
        "usage": reply.usage,
    }


def chunks(reply: Reply, model: str, include_usage: bool, completion_id: str | None = None) -> list[dict[str, Any]]:
    """The `chat.completion.chunk` objects of a stream, in order (without `[DONE]`)."""
    head = {
        "id": completion_id or new_completion_id(),
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_fake",
    }
    if include_usage:
        head["usage"] = None

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return {**head, "choices": [choice]}

    out: list[dict[str, Any]]
    if reply.tool_call is not None:
        call = reply.tool_call
        opening = {"index": 0, "id": call.id, "type": "function", "function": {"name": call.name, "arguments": ""}}
        out = [
            chunk({"role": "assistant", "content": None, "tool_calls": [opening]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": call.arguments}}]}),
        ]
    else:
        out = [chunk({"role": "assistant", "content": "", "refusal": None})]
        out += [chunk({"content": piece}) for piece in pieces(reply.text or "")]
    out.append(chunk({}, reply.finish_reason))
    if include_usage:
        out.append({**head, "choices": [], "usage": reply.usage})
    return out
