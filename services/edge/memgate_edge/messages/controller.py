"""HTTP handler of Anthropic's Messages API; its errors in that API's shape."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
from litestar import Controller, Request, Response, post
from litestar.exceptions import HTTPException
from litestar.types import ExceptionHandlersMap

from memgate_core.errors import ErrorEnvelope, GatewayError
from memgate_edge.auth import Principal
from memgate_edge.deps import EdgeDeps
from memgate_edge.errors import gateway_error, http_error, unexpected_error
from memgate_edge.messages.api import MESSAGES

# The Messages API's error types by status (memgate's own code and param have no place there).
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 529: "overloaded_error"}


def _in_messages_shape(handler: Callable[[Request[Any, Any, Any], Any], Response[Any]]) -> Any:
    def handle(request: Request[Any, Any, Any], exc: Any) -> Response[Any]:
        response = handler(request, exc)  # the OpenAI shape: its status, headers and message
        envelope = response.content
        message = envelope.error.message if isinstance(envelope, ErrorEnvelope) else "Request failed."
        status = response.status_code or 500
        body = {"type": "error", "error": {"type": ERROR_TYPES.get(status, "api_error"), "message": message}}
        return Response(msgspec.json.encode(body), status_code=status, headers=dict(response.headers),
                        media_type="application/json")
    return handle


class MessagesController(Controller):
    path = "/v1"
    exception_handlers: ExceptionHandlersMap = {  # noqa: RUF012 (Litestar's own layer attribute)
        GatewayError: _in_messages_shape(gateway_error),
        HTTPException: _in_messages_shape(http_error),
        Exception: _in_messages_shape(unexpected_error),
    }

    @post("/messages", status_code=200)
    async def messages(self, request: Request[Any, Any, Any], deps: EdgeDeps, principal: Principal) -> Response[Any]:
        """Create a message (Anthropic's Messages API), with memory when x-thread-id and x-resource-id are sent."""
        return await deps.chat.complete(await request.body(), dict(request.headers), principal, MESSAGES)
