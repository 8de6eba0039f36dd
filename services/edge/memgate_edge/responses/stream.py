"""A chat completion stream told as the Responses API's events, as each chunk arrives.

`response.created` and `response.in_progress` first; per output item (the text message, each
function call) `response.output_item.added`, its deltas and `.done` events; then
`response.completed` with the whole response, which is the end marker the relay holds back
until the exchange is recorded.
"""

from __future__ import annotations

from typing import Any

import msgspec

from memgate_core.events import Usage
from memgate_core.ids import new_id
from memgate_edge.chat.streaming import FromChatChunks, data_of, first_choice, tool_call_pieces
from memgate_edge.responses.translate import call_item, message_item, output_text, response

_DONE = b"[DONE]"


class ChatAsResponses(FromChatChunks):
    def __init__(self, request: dict[str, Any], model: str) -> None:
        super().__init__()
        self.request = request
        self.model = model
        self.id = new_id("resp")
        self.output: list[dict[str, Any]] = []  # the items so far, completed as they close
        self._sequence = 0
        self._open: tuple[str, int] | None = None  # ("text", 0) or ("call", the chat call's index)
        self._text = ""  # of the open message item
        self._finish_reason: Any = "stop"

    def translate(self, raw: bytes) -> tuple[bytes, bytes]:
        data = data_of(raw)
        if not data:
            return b"", b""  # (comments and keep-alives)
        out = [] if self._sequence else self._start()
        if data == _DONE:
            out += self._close_item()
            usage = self.collector.usage or Usage()
            done = response(self.id, self.request, self.model, self.output, finish_reason=self._finish_reason,
                            usage=(usage.prompt_tokens, usage.completion_tokens))
            return b"".join(out), self._event("response.completed", response=done)
        chunk = self.read(data)
        if isinstance(chunk, dict) and isinstance(chunk.get("error"), dict):
            error = chunk["error"]
            out.append(self.error_event(str(error.get("message", "upstream error")), str(error.get("code") or ""),
                                        str(error.get("type", ""))))
        for delta, finish_reason in first_choice(chunk):
            out += self._deltas(delta)
            if finish_reason is not None:
                self._finish_reason = finish_reason
        return b"".join(out), b""

    def _event(self, kind: str, **data: Any) -> bytes:
        payload = msgspec.json.encode({"type": kind, "sequence_number": self._sequence, **data})
        self._sequence += 1
        return b"event: " + kind.encode() + b"\ndata: " + payload + b"\n\n"

    def _start(self) -> list[bytes]:
        begun = response(self.id, self.request, self.model, [], status="in_progress")
        return [self._event("response.created", response=begun), self._event("response.in_progress", response=begun)]

    def _deltas(self, delta: dict[str, Any]) -> list[bytes]:
        out = []
        if isinstance(delta.get("content"), str) and delta["content"]:
            if self._open != ("text", 0):
                out += self._close_item()
                out += self._add(message_item(new_id("msg"), "", status="in_progress"), ("text", 0))
                out.append(self._event("response.content_part.added", item_id=self._item["id"],
                                       output_index=self._index, content_index=0, part=output_text("")))
            self._text += delta["content"]
            out.append(self._event("response.output_text.delta", item_id=self._item["id"], output_index=self._index,
                                   content_index=0, delta=delta["content"], logprobs=[]))
        for index, call, function in tool_call_pieces(delta):
            if self._open != ("call", index):
                out += self._close_item()
                item = call_item(new_id("fc"), str(call.get("id") or new_id("call")), str(function.get("name") or ""),
                                 "", status="in_progress")
                out += self._add(item, ("call", index))
            arguments = function.get("arguments")
            if isinstance(arguments, str) and arguments:
                self._item["arguments"] += arguments
                out.append(self._event("response.function_call_arguments.delta", item_id=self._item["id"],
                                       output_index=self._index, delta=arguments))
        return out

    @property
    def _item(self) -> dict[str, Any]:
        return self.output[-1]

    @property
    def _index(self) -> int:
        return len(self.output) - 1

    def _add(self, item: dict[str, Any], which: tuple[str, int]) -> list[bytes]:
        self.output.append(item)
        self._open = which
        return [self._event("response.output_item.added", output_index=self._index, item=dict(item))]

    def _close_item(self) -> list[bytes]:
        if self._open is None:
            return []
        item, index = self._item, self._index
        self._open = None
        out = []
        if item["type"] == "message":
            text, self._text = self._text, ""
            part = output_text(text)
            out += [self._event("response.output_text.done", item_id=item["id"], output_index=index, content_index=0,
                                text=text, logprobs=[]),
                    self._event("response.content_part.done", item_id=item["id"], output_index=index,
                                content_index=0, part=part)]
            item["content"] = [part]
        else:
            out.append(self._event("response.function_call_arguments.done", item_id=item["id"], output_index=index,
                                   arguments=item["arguments"]))
        item["status"] = "completed"
        return [*out, self._event("response.output_item.done", output_index=index, item=item)]

    def error_event(self, message: str, code: str, kind: str) -> bytes:
        return self._event("error", code=code or kind, message=message, param=None)
