"""POST /v1/responses: OpenAI's Responses API, translated to and from chat completions.

Every provider gets the chat completion translation (`translate`): memory goes in as it does
for a chat completion, ahead of the request's `instructions`.
"""

from __future__ import annotations

import msgspec

from memgate_edge.chat.api import Answer, ChatCompletions, chat_answer, decode_or_none, translated_request
from memgate_edge.chat.request import ChatRequest
from memgate_edge.chat.streaming import StreamFormat
from memgate_edge.responses import translate
from memgate_edge.responses.stream import ChatAsResponses


class Responses(ChatCompletions):
    """Sent upstream as chat completions are (`open`); read and answered in its own terms."""

    name = "responses"

    def parse(self, raw: bytes, headers: dict[str, str]) -> ChatRequest:
        return translated_request(raw, headers, translate.check, translate.chat_body)

    def answer(self, raw: bytes, request: ChatRequest, *, native: bool, media_type: str) -> Answer:
        text, usage = chat_answer(raw)
        body = translate.response_of(decode_or_none(raw), request.native or {}, request.model)
        return Answer(msgspec.json.encode(body), text, usage)

    def stream(self, request: ChatRequest, *, native: bool) -> StreamFormat:
        return ChatAsResponses(request.native or {}, request.model)


RESPONSES = Responses()
