"""HTTP handlers of the admin API. Every handler needs an admin key (403 otherwise)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, delete, get, post

from memgate_edge.admin.schemas import CreatedKey, KeyView
from memgate_edge.admin.service import AdminService
from memgate_edge.auth import Principal
from memgate_store import UsageReport


class AdminController(Controller):
    """Every handler takes `operator`: the dependency (memgate_edge.access) that lets only
    admin keys in, within their rate limit."""

    path = "/v1/admin"
    tags = ("admin",)

    @post("/keys", status_code=201)
    async def create_key(self, request: Request[Any, Any, Any], operator: Principal,
                         admin: AdminService) -> Response[CreatedKey]:
        """Create a key for a tenant; the response holds the key, shown this once."""
        return Response(await admin.create_key(await request.body()), status_code=201)

    @get("/keys")
    async def list_keys(self, request: Request[Any, Any, Any], operator: Principal, admin: AdminService,
                        tenant: str | None = None) -> Response[dict[str, Any]]:
        """List keys (of one tenant, or all): ids, prefixes, limits, never the keys."""
        return Response({"object": "list", "data": await admin.list_keys(tenant)})

    @delete("/keys/{key_id:str}", status_code=200)
    async def revoke_key(self, request: Request[Any, Any, Any], operator: Principal, admin: AdminService,
                         key_id: str) -> Response[KeyView]:
        """Revoke a key: it stops working within the auth cache time (MEMGATE_AUTH_CACHE_SECONDS)."""
        return Response(await admin.revoke_key(key_id))

    @get("/usage")
    async def usage(self, request: Request[Any, Any, Any], operator: Principal, admin: AdminService,
                    tenant: str | None = None, since: str | None = None,
                    until: str | None = None) -> Response[UsageReport]:
        """Usage by model, provider and key since `since` (ISO time, or 30m / 24h / 7d; default 24h)."""
        return Response(await admin.usage(tenant, since, until))
