"""POST /v1/responses: OpenAI's Responses API, translated to and from chat completions.

Every provider gets the chat completion translation (`translate`): memory goes in as it does
for a chat completion, ahead of the request's `instructions`.
"""

from __future__ import annotations

import msgspec

from memgate_edge.chat.api import Answer, chat_answer, decode_or_none
from memgate_edge.chat.request import ChatRequest, chat_request, decode_object
from memgate_edge.chat.streaming import StreamFormat
from memgate_edge.responses import translate
from memgate_edge.responses.stream import ChatAsResponses
from memgate_providers import ProviderClient, http
from memgate_providers.registry import Route


class Responses:
    name = "responses"

    def parse(self, raw: bytes, headers: dict[str, str]) -> ChatRequest:
        body = decode_object(raw)
        translate.check(body)
        request = chat_request(translate.chat_body(body), headers)
        request.native = body
        return request

    async def open(self, providers: ProviderClient, request: ChatRequest, memory: str, *,
                   api_key: str | None) -> tuple[http.Response, Route, bool]:
        messages = [{"role": "system", "content": memory}, *request.messages] if memory else request.messages
        upstream, route = await providers.open_chat(request.model, {**request.body, "messages": messages},
                                                    api_key=api_key)
        return upstream, route, False

    def answer(self, raw: bytes, request: ChatRequest, *, native: bool, media_type: str) -> Answer:
        text, usage = chat_answer(raw)
        body = translate.response_of(decode_or_none(raw), request.native or {}, request.model)
        return Answer(msgspec.json.encode(body), text, usage)

    def stream(self, request: ChatRequest, *, native: bool) -> StreamFormat:
        return ChatAsResponses(request.native or {}, request.model)


RESPONSES = Responses()
