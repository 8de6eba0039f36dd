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
        return await deps.chat.complete(await request.body(), headers, principal)

    @get("/models")
    async def models(self, request: Request[Any, Any, Any], deps: EdgeDeps) -> dict[str, Any]:
        """The models memgate can route: each provider's well-known models, as provider/model."""
        await deps.auth.authenticate(dict(request.headers))
        data = [
            {"id": f"{name}/{model}", "object": "model", "created": 0, "owned_by": name}
            for name, provider in sorted(deps.chat.providers.registry.providers.items())
            for model in provider.spec.models
        ]
        return {"object": "list", "data": data}
