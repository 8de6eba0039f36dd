"""HTTP handlers of the OpenAI-compatible API."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get, post

from memgate_edge.deps import EdgeDeps


class ChatController(Controller):
    path = "/v1"

    @post("/chat/completions", status_code=200)
    async def chat_completions(self, request: Request[Any, Any, Any], deps: EdgeDeps) -> Response[Any]:
        """Create a chat completion, with memory when x-thread-id and x-resource-id are sent."""
        headers = dict(request.headers)
        principal = await deps.auth.authenticate(headers)
        decision = await deps.limiter.enforce(principal)  # 429 with Retry-After when over the limit
        response = await deps.chat.complete(await request.body(), headers, principal)
        response.headers.update(decision.headers())
        return response

    @get("/models")
    async def models(self, request: Request[Any, Any, Any], deps: EdgeDeps, refresh: bool = False) -> Response[Any]:
        """The models memgate can route (provider/model and aliases); `refresh=true` also asks the providers."""
        principal = await deps.auth.authenticate(dict(request.headers))
        decision = await deps.limiter.enforce(principal)
        data = deps.chat.providers.registry.list_models()
        if refresh:
            known = {m["id"] for m in data}
            data += [m for m in await deps.chat.providers.fetch_models() if m["id"] not in known]
        return Response({"object": "list", "data": data}, headers=decision.headers())
