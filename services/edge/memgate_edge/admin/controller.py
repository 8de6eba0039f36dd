"""HTTP handlers of the admin API. Every handler needs an admin key (403 otherwise)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, delete, get, post

from memgate_core.errors import PermissionDenied
from memgate_edge.admin.schemas import CreatedKey, KeyView
from memgate_edge.admin.service import AdminService
from memgate_edge.deps import EdgeDeps
from memgate_edge.ratelimit import RateDecision
from memgate_store import UsageReport


async def _operator(request: Request[Any, Any, Any], deps: EdgeDeps) -> RateDecision:
    """Authenticate, require the admin scope, apply the key's rate limit."""
    principal = await deps.auth.authenticate(dict(request.headers))
    if not principal.is_admin:
        raise PermissionDenied(
            "This endpoint needs an admin key (created with `memgate keys create --admin`, or MEMGATE_ADMIN_KEY).",
            code="admin_key_required",
        )
    return await deps.limiter.enforce(principal)


class AdminController(Controller):
    path = "/v1/admin"
    tags = ("admin",)

    @post("/keys", status_code=201)
    async def create_key(self, request: Request[Any, Any, Any], deps: EdgeDeps,
                         admin: AdminService) -> Response[CreatedKey]:
        """Create a key for a tenant; the response holds the key, shown this once."""
        decision = await _operator(request, deps)
        return Response(await admin.create_key(await request.body()), status_code=201, headers=decision.headers())

    @get("/keys")
    async def list_keys(self, request: Request[Any, Any, Any], deps: EdgeDeps, admin: AdminService,
                        tenant: str | None = None) -> Response[dict[str, Any]]:
        """List keys (of one tenant, or all): ids, prefixes, limits, never the keys."""
        decision = await _operator(request, deps)
        return Response({"object": "list", "data": await admin.list_keys(tenant)}, headers=decision.headers())

    @delete("/keys/{key_id:str}", status_code=200)
    async def revoke_key(self, request: Request[Any, Any, Any], deps: EdgeDeps, admin: AdminService,
                         key_id: str) -> Response[KeyView]:
        """Revoke a key: it stops working within the auth cache time (MEMGATE_AUTH_CACHE_SECONDS)."""
        decision = await _operator(request, deps)
        return Response(await admin.revoke_key(key_id), headers=decision.headers())

    @get("/usage")
    async def usage(self, request: Request[Any, Any, Any], deps: EdgeDeps, admin: AdminService,
                    tenant: str | None = None, since: str | None = None,
                    until: str | None = None) -> Response[UsageReport]:
        """Usage by model, provider and key since `since` (ISO time, or 30m / 24h / 7d; default 24h)."""
        decision = await _operator(request, deps)
        return Response(await admin.usage(tenant, since, until), headers=decision.headers())
