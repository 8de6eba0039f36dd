"""The Messages API's event stream, as `StreamFormat`s for the relay.

`MessagesStream` passes a provider's own Messages stream through (collecting the answer);
`ChatAsMessages` turns a chat completion stream into the Messages API's events as each
chunk arrives: `message_start`, then per content block `content_block_start`,
`content_block_delta`s and `content_block_stop`, then `message_delta` and `message_stop`.
"""

from __future__ import annotations

from typing import Any

import msgspec

from memgate_core.events import Usage
from memgate_core.ids import new_id
from memgate_edge.chat.request import describe_tool_calls
from memgate_edge.chat.streaming import FromChatChunks, data_of, decoded, first_choice, tool_call_pieces
from memgate_edge.messages.translate import STOP_REASONS, messages_usage

_DONE = b"[DONE]"
# memgate's error types as the Messages API names them
ERROR_TYPES = {"invalid_request_error": "invalid_request_error", "authentication_error": "authentication_error",
               "permission_error": "permission_error", "not_found": "not_found_error",
               "rate_limit_error": "rate_limit_error"}


def event(kind: str, data: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + msgspec.json.encode({"type": kind, **data}) + b"\n\n"


def error_event(message: str, kind: str) -> bytes:
    return event("error", {"error": {"type": ERROR_TYPES.get(kind, "api_error"), "message": message}})


MESSAGE_STOP = event("message_stop", {})


class MessagesStream:
    """A provider's own Messages stream, passed through untouched."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.calls: list[list[str]] = []  # [name, input JSON so far] per tool_use block
        self._usage: Usage | None = None

    def translate(self, raw: bytes) -> tuple[bytes, bytes]:
        data = data_of(raw)
        payload = decoded(data) if data else None
        if not isinstance(payload, dict):
            return raw, b""
        kind = payload.get("type")
        if kind == "message_stop":
            return b"", raw
        if kind == "message_start" and isinstance(payload.get("message"), dict):
            self._usage = messages_usage(payload["message"].get("usage"), self._usage)
        elif kind == "message_delta":
            self._usage = messages_usage(payload.get("usage"), self._usage)
        elif kind == "content_block_start":
            block = payload.get("content_block")
            if isinstance(block, dict) and block.get("type") == "tool_use":
                self.calls.append([str(block.get("name", "?")), ""])
        elif kind == "content_block_delta" and isinstance(payload.get("delta"), dict):
            delta = payload["delta"]
            if delta.get("type") == "text_delta" and isinstance(delta.get("text"), str):
                self.parts.append(delta["text"])
            elif delta.get("type") == "input_json_delta" and self.calls and isinstance(delta.get("partial_json"), str):
                self.calls[-1][1] += delta["partial_json"]
        return raw, b""

    def error_event(self, message: str, code: str, kind: str) -> bytes:
        return error_event(message, kind)

    @property
    def text(self) -> str:
        calls = describe_tool_calls([(name, arguments or "{}") for name, arguments in self.calls])
        return "\n".join(filter(None, ["".join(self.parts), calls]))

    @property
    def usage(self) -> Usage | None:
        return self._usage


class ChatAsMessages(FromChatChunks):
    """A chat completion stream, told as the Messages API's events."""

    def __init__(self, model: str) -> None:
        super().__init__()
        self.model = model
        self._started = False
        self._block = -1  # index of the open content block (-1: none)
        self._open: tuple[str, int] | None = None  # ("text", 0) or ("tool", the chat call's index)
        self._stop_reason = "end_turn"

    def translate(self, raw: bytes) -> tuple[bytes, bytes]:
        data = data_of(raw)
        if not data:
            return b"", b""  # (comments and keep-alives)
        out = [] if self._started else [self._start()]
        if data == _DONE:
            return b"".join([*out, *self._finish()]), MESSAGE_STOP
        chunk = self.read(data)
        if isinstance(chunk, dict) and isinstance(chunk.get("error"), dict):
            error = chunk["error"]
            out.append(error_event(str(error.get("message", "upstream error")), str(error.get("type", ""))))
        for delta, finish_reason in first_choice(chunk):
            out += self._deltas(delta)
            if isinstance(finish_reason, str):
                self._stop_reason = STOP_REASONS.get(finish_reason, "end_turn")
        return b"".join(out), b""

    def _start(self) -> bytes:
        self._started = True
        return event("message_start", {"message": {
            "id": new_id("msg"), "type": "message", "role": "assistant", "model": self.model, "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 0, "output_tokens": 0}}})

    def _deltas(self, delta: dict[str, Any]) -> list[bytes]:
        out = []
        if isinstance(delta.get("content"), str) and delta["content"]:
            if self._open != ("text", 0):
                out += self._begin(("text", 0), {"type": "text", "text": ""})
            out.append(event("content_block_delta", {"index": self._block,
                                                     "delta": {"type": "text_delta", "text": delta["content"]}}))
        for index, call, function in tool_call_pieces(delta):
            if self._open != ("tool", index):
                out += self._begin(("tool", index), {"type": "tool_use", "id": call.get("id") or new_id("toolu"),
                                                     "name": function.get("name") or "", "input": {}})
            arguments = function.get("arguments")
            if isinstance(arguments, str) and arguments:
                out.append(event("content_block_delta", {
                    "index": self._block, "delta": {"type": "input_json_delta", "partial_json": arguments}}))
        return out

    def _begin(self, which: tuple[str, int], block: dict[str, Any]) -> list[bytes]:
        out = self._close_block()
        self._block += 1
        self._open = which
        return [*out, event("content_block_start", {"index": self._block, "content_block": block})]

    def _close_block(self) -> list[bytes]:
        if self._open is None:
            return []
        self._open = None
        return [event("content_block_stop", {"index": self._block})]

    def _finish(self) -> list[bytes]:
        usage = self.collector.usage or Usage()
        return [*self._close_block(), event("message_delta", {
            "delta": {"stop_reason": self._stop_reason, "stop_sequence": None},
            "usage": {"input_tokens": usage.prompt_tokens, "output_tokens": usage.completion_tokens}})]

    def error_event(self, message: str, code: str, kind: str) -> bytes:
        return error_event(message, kind)
