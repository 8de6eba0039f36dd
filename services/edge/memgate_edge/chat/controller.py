"""HTTP handlers of the OpenAI-compatible API (Anthropic's has its own: `memgate_edge.messages`)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get, post

from memgate_edge.auth import Principal
from memgate_edge.deps import EdgeDeps
from memgate_edge.responses.api import RESPONSES


class ChatController(Controller):
    path = "/v1"

    @post("/chat/completions", status_code=200)
    async def chat_completions(self, request: Request[Any, Any, Any], deps: EdgeDeps,
                               principal: Principal) -> Response[Any]:
        """Create a chat completion, with memory when x-thread-id and x-resource-id are sent."""
        return await deps.chat.complete(await request.body(), dict(request.headers), principal)

    @post("/responses", status_code=200)
    async def responses(self, request: Request[Any, Any, Any], deps: EdgeDeps, principal: Principal) -> Response[Any]:
        """Create a model response (OpenAI's Responses API), with memory when x-thread-id and x-resource-id are sent."""
        return await deps.chat.complete(await request.body(), dict(request.headers), principal, RESPONSES)

    @get("/models")
    async def models(self, deps: EdgeDeps, principal: Principal, refresh: bool = False) -> Response[Any]:
        """The models memgate can route (provider/model and aliases); `refresh=true` also asks the providers."""
        data = deps.chat.providers.registry.list_models()
        if refresh:
            known = {m["id"] for m in data}
            data += [m for m in await deps.chat.providers.fetch_models() if m["id"] not in known]
        return Response({"object": "list", "data": data})
