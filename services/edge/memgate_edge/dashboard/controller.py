"""The dashboard: sign in with an API key, browse threads, messages and observations."""

from __future__ import annotations

from itertools import groupby
from typing import Any
from urllib.parse import urlsplit

from litestar import Controller, Request, get, post
from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie, ResponseHeader
from litestar.handlers import BaseRouteHandler
from litestar.response import Redirect, Template

from memgate_core.errors import AuthenticationFailed, NotFound, PermissionDenied
from memgate_edge.deps import EdgeDeps
from memgate_edge.memory.service import MemoryService

SESSION_COOKIE = "memgate_session"
FAILURES_SHOWN = 20
# The pages are server-rendered HTML with no script: nothing else may load, and no other
# site may frame them (clickjacking a delete button).
SECURITY_HEADERS = [
    ResponseHeader(name="Content-Security-Policy", value=(
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'")),
    ResponseHeader(name="X-Frame-Options", value="DENY"),
    ResponseHeader(name="X-Content-Type-Options", value="nosniff"),
    ResponseHeader(name="Referrer-Policy", value="same-origin"),
]


def same_origin(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Forms are accepted from the dashboard's own pages only, so that another site cannot
    sign a visitor in (to the other site's tenant) or out. The session cookie is SameSite=
    Strict, which covers everything else. The browser says where a form comes from:
    Sec-Fetch-Site, or Origin for one too old to send it; a client sending neither (not a
    browser) is no cross-site request."""
    site = connection.headers.get("sec-fetch-site")
    if site is not None:
        if site in ("same-origin", "none"):  # ("none": typed or bookmarked by the user)
            return
    else:
        origin = connection.headers.get("origin")
        if origin is None or urlsplit(origin).netloc == connection.headers.get("host"):
            return
    raise PermissionDenied("Dashboard forms are accepted from the dashboard's own pages only.",
                           code="cross_site_request")


class DashboardController(Controller):
    path = "/dashboard"
    include_in_schema = False
    response_headers = SECURITY_HEADERS

    async def _tenant(self, request: Request[Any, Any, Any], deps: EdgeDeps) -> str | None:
        token = request.cookies.get(SESSION_COOKIE)
        return await deps.stores.sessions.tenant_for(token) if token else None

    def _page(self, name: str, deps: EdgeDeps, **context: Any) -> Template:
        return Template(template_name=name, context={"notices": deps.notices, "observer": deps.observer_name, **context})

    @get("/")
    async def index(self) -> Redirect:
        return Redirect("/dashboard/threads")

    @get("/login")
    async def login_form(self, deps: EdgeDeps) -> Template:
        """The sign-in form."""
        return self._page("login.html", deps, tenant=None, error=None)

    @post("/login", status_code=303, guards=[same_origin])
    async def login(self, request: Request[Any, Any, Any], deps: EdgeDeps) -> Template | Redirect:
        """Exchange an API key for a session cookie."""
        form = await request.form()
        key = str(form.get("api_key", "")).strip()
        try:
            principal = await deps.auth.authenticate({"authorization": f"Bearer {key}"})
        except AuthenticationFailed:
            page = self._page("login.html", deps, tenant=None, error="That API key is not valid.")
            page.status_code = 401
            return page
        token = await deps.stores.sessions.open(principal.tenant, principal.key_id)
        cookie = Cookie(key=SESSION_COOKIE, value=token, httponly=True, samesite="strict", path="/dashboard",
                        max_age=12 * 3600, secure=request.url.scheme == "https")
        return Redirect("/dashboard/threads", cookies=[cookie], status_code=303)

    @post("/logout", status_code=303, guards=[same_origin])
    async def logout(self, request: Request[Any, Any, Any], deps: EdgeDeps) -> Redirect:
        token = request.cookies.get(SESSION_COOKIE)
        if token:
            await deps.stores.sessions.close(token)
        return Redirect("/dashboard/login", cookies=[Cookie(key=SESSION_COOKIE, value="", path="/dashboard", max_age=0)],
                        status_code=303)

    @get("/threads")
    async def threads(self, request: Request[Any, Any, Any], deps: EdgeDeps, memory: MemoryService,
                      resource_id: str | None = None) -> Template | Redirect:
        """Threads of the signed-in tenant, grouped by resource."""
        tenant = await self._tenant(request, deps)
        if tenant is None:
            return Redirect("/dashboard/login")
        threads, _ = await memory.threads(tenant, resource_id, 500, 0)
        ordered = sorted(threads, key=lambda t: t.resource_id)
        groups = [(r, list(ts)) for r, ts in groupby(ordered, key=lambda t: t.resource_id)]
        return self._page("threads.html", deps, tenant=tenant, groups=groups, resource_id=resource_id)

    @get("/threads/{thread_id:str}")
    async def thread(self, request: Request[Any, Any, Any], deps: EdgeDeps, memory: MemoryService,
                     thread_id: str) -> Template | Redirect:
        """One thread: its messages beside its observations, current task and observer failures."""
        tenant = await self._tenant(request, deps)
        if tenant is None:
            return Redirect("/dashboard/login")
        try:
            thread = await memory.thread(tenant, thread_id)
        except NotFound:
            page = self._page("threads.html", deps, tenant=tenant, groups=[], resource_id=None)
            page.status_code = 404
            return page
        observations = await memory.observations(tenant, thread_id)
        newest, _ = await memory.messages(tenant, thread_id, 1000, newest_first=True)
        return self._page(
            "thread.html", deps, tenant=tenant, thread=thread,
            messages=newest[::-1],  # (in time order)
            observations=[o for o in observations if o.superseded_at is None],
            superseded=[o for o in observations if o.superseded_at is not None],
            state=await deps.stores.observations.thread_memory(tenant, thread_id),
            failures=await deps.stores.observations.failures(tenant, thread_id, limit=FAILURES_SHOWN),
        )
