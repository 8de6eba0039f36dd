"""Who may call: the API key (401), its rate limit (429) and, for the admin API, its scope (403).

Handlers receive the caller as a dependency (`principal`, or `operator` for the admin API)
and never check keys themselves; the limit's X-RateLimit-* headers are added to whatever the
handler answers, streams included (`rate_limit_headers`). Which of a key's limits a request
counts against follows from its route (`limit_scope`).
"""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.datastructures import MutableScopeHeaders
from litestar.types import Message, Scope

from memgate_core.errors import PermissionDenied
from memgate_edge.auth import Principal
from memgate_edge.deps import EdgeDeps
from memgate_edge.ratelimit import LimitScope, RateDecision

_DECISION = "memgate_rate_limit"  # where the request's decision waits for its response


async def provide_principal(request: Request[Any, Any, Any], deps: EdgeDeps) -> Principal:
    """The caller, within its key's rate limit of the request's scope."""
    principal = await deps.auth.authenticate(dict(request.headers))
    # 429 with Retry-After when over it
    scope = limit_scope(request.method, request.scope["path"])  # (the raw path: no URL object built per request)
    request.state[_DECISION] = await deps.limiter.enforce(principal, scope)
    return principal


def limit_scope(method: str, path: str) -> LimitScope:
    """The memory and admin APIs count as memory reads (GET, HEAD) or writes; the rest is the
    LLM proxy's (chat completions, responses, messages, models)."""
    if path.startswith(("/v1/memory/", "/v1/admin/")) or path in ("/v1/memory", "/v1/admin"):
        return "memory_read" if method in ("GET", "HEAD") else "memory_write"
    return "chat"


async def provide_operator(principal: Principal) -> Principal:
    """The caller, with an admin key."""
    if not principal.is_admin:
        raise PermissionDenied(
            "This endpoint needs an admin key (created with `memgate keys create --admin`, or MEMGATE_ADMIN_KEY).",
            code="admin_key_required",
        )
    return principal


async def rate_limit_headers(message: Message, scope: Scope) -> None:
    """Litestar `before_send`: the response carries the decision of its request's key."""
    if message["type"] != "http.response.start":
        return
    decision = scope.get("state", {}).get(_DECISION)
    if isinstance(decision, RateDecision):
        headers = MutableScopeHeaders.from_message(message)
        for name, value in decision.headers().items():
            headers[name] = value
