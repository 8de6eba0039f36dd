"""The dashboard's sign-in and sign-out; each page group has its own module (see `pages.py`)."""

from __future__ import annotations

from typing import Any

from litestar import Request, get, post
from litestar.datastructures import Cookie
from litestar.response import Redirect, Template

from memgate_core.errors import AuthenticationFailed
from memgate_edge.dashboard.pages import SESSION_COOKIE, DashboardPages, same_origin
from memgate_edge.deps import EdgeDeps


class DashboardController(DashboardPages):
    path = "/dashboard"

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
