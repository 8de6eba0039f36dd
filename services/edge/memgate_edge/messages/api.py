"""POST /v1/messages: Anthropic's Messages API, with memory in `system`.

Providers that speak it (Anthropic) get the client's own body, memory added; the others
get its chat completion translation (`translate`), and their answers come back translated.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from memgate_edge.chat.api import Answer, chat_answer, chat_with_memory, decode_or_none, translated_request
from memgate_edge.chat.request import ChatRequest
from memgate_edge.chat.streaming import StreamFormat
from memgate_edge.messages import translate
from memgate_edge.messages.stream import ChatAsMessages, MessagesStream
from memgate_providers import ProviderClient, http
from memgate_providers.registry import Route


class Messages:
    name = "messages"

    def parse(self, raw: bytes, headers: dict[str, str]) -> ChatRequest:
        return translated_request(raw, headers, translate.check, translate.chat_body)

    async def open(self, providers: ProviderClient, request: ChatRequest, memory: str, *,
                   api_keys: Mapping[str, str | None]) -> tuple[http.Response, Route, bool]:
        assert request.native is not None
        return await providers.open_messages(request.model, translate.with_memory(request.native, memory),
                                             chat_with_memory(request, memory), api_keys=api_keys)

    def answer(self, raw: bytes, request: ChatRequest, *, native: bool, media_type: str) -> Answer:
        if native:
            text, usage = translate.messages_answer(decode_or_none(raw))
            return Answer(raw, text, usage, media_type)
        text, usage = chat_answer(raw)
        body = msgspec.json.encode(translate.message_of(decode_or_none(raw), request.model))
        return Answer(body, text, usage)

    def stream(self, request: ChatRequest, *, native: bool) -> StreamFormat:
        return MessagesStream() if native else ChatAsMessages(request.model)


MESSAGES = Messages()
