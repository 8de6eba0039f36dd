"""The public APIs a chat goes through, each one `Api`: how its requests and answers look.

`ChatService` runs one path for all of them (validate → context → provider → record); an
API says how to read its request, how memory goes into it, which provider endpoint takes
it, and what its answer and its stream look like. Chat completions is the first;
`memgate_edge.messages.api` has Anthropic's Messages API.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

import msgspec

from memgate_core.events import Usage
from memgate_edge.chat.exchange import usage_of
from memgate_edge.chat.request import ChatRequest, chat_request, decode_object, parse_chat_request, remembered_text
from memgate_edge.chat.streaming import ChatStream, StreamFormat
from memgate_providers import ProviderClient, http
from memgate_providers.registry import Route


class Answer(msgspec.Struct, frozen=True):
    body: bytes  # what the client gets
    text: str  # what memory keeps of it
    usage: Usage | None
    media_type: str = "application/json"


class Api(Protocol):
    name: str  # the span's name

    def parse(self, raw: bytes, headers: dict[str, str]) -> ChatRequest: ...

    async def open(self, providers: ProviderClient, request: ChatRequest, memory: str, *,
                   api_keys: Mapping[str, str | None]) -> tuple[http.Response, Route, bool]:
        """Send the request with `memory` (the block, or "") to the model's chain; the
        flag: whether the provider answered in this API's own format (else chat completions)."""
        ...

    def answer(self, raw: bytes, request: ChatRequest, *, native: bool, media_type: str) -> Answer: ...

    def stream(self, request: ChatRequest, *, native: bool) -> StreamFormat: ...


class ChatCompletions:
    """POST /v1/chat/completions: memory is a leading system message."""

    name = "chat.completions"

    def parse(self, raw: bytes, headers: dict[str, str]) -> ChatRequest:
        return parse_chat_request(raw, headers)

    async def open(self, providers: ProviderClient, request: ChatRequest, memory: str, *,
                   api_keys: Mapping[str, str | None]) -> tuple[http.Response, Route, bool]:
        upstream, route = await providers.open_chat(request.model, chat_with_memory(request, memory), api_keys=api_keys)
        return upstream, route, False

    def answer(self, raw: bytes, request: ChatRequest, *, native: bool, media_type: str) -> Answer:
        text, usage = chat_answer(raw)
        return Answer(raw, text, usage, media_type)

    def stream(self, request: ChatRequest, *, native: bool) -> StreamFormat:
        return ChatStream()


def chat_with_memory(request: ChatRequest, memory: str) -> dict[str, Any]:
    """The chat completion body with the memory block (if any) as its first message."""
    messages = [{"role": "system", "content": memory}, *request.messages] if memory else request.messages
    return {**request.body, "messages": messages}


def translated_request(raw: bytes, headers: dict[str, str], check: Callable[[dict[str, Any]], None],
                       to_chat: Callable[[dict[str, Any]], dict[str, Any]]) -> ChatRequest:
    """A request of another API: checked in its own terms, then read as the chat completion
    it amounts to (which memory reads), its own body kept as `native`."""
    body = decode_object(raw)
    check(body)
    request = chat_request(to_chat(body), headers)
    request.native = body
    return request


def chat_answer(raw: bytes) -> tuple[str, Usage | None]:
    """The assistant's answer as memgate remembers it, and the usage, from a chat completion."""
    data = decode_or_none(raw)
    text = ""
    if isinstance(data, dict):
        choices = data.get("choices") or []
        if choices and isinstance(choices[0], dict) and isinstance(choices[0].get("message"), dict):
            text = remembered_text(choices[0]["message"])
    return text, usage_of(data)


def decode_or_none(raw: bytes) -> Any:
    """A provider's JSON answer, or None when it is not JSON (passed on untouched then:
    there is just nothing to remember or count)."""
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return None


CHAT_COMPLETIONS = ChatCompletions()
