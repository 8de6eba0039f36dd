"""What every dashboard page shares: the signed-in tenant, the page template, the security
headers and the same-origin check on forms. Each page group is a `DashboardPages` subclass in
its own module (threads, logs, usage, settings), listed in `memgate_edge.dashboard.CONTROLLERS`."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from litestar import Controller, Request
from litestar.connection import ASGIConnection
from litestar.datastructures import ResponseHeader
from litestar.di import Provide
from litestar.handlers import BaseRouteHandler
from litestar.response import Redirect, Template
from litestar.types import Dependencies, ExceptionHandlersMap

from memgate_core.errors import PermissionDenied
from memgate_edge.deps import EdgeDeps

SESSION_COOKIE = "memgate_session"
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
    """Forms are accepted from the dashboard's own pages only (the dashboard's CSRF check), so
    that another site cannot sign a visitor in (to the other site's tenant) or out, or post
    any other form. The session cookie is SameSite=Strict, which covers everything else. The
    browser says where a form comes from: Sec-Fetch-Site, or Origin for one too old to send
    it; a client sending neither (not a browser) is no cross-site request."""
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


class NotSignedIn(Exception):
    """A page asked for the signed-in tenant, and there is none: to the sign-in page."""


async def signed_in_tenant(request: Request[Any, Any, Any], deps: EdgeDeps) -> str:
    """The `tenant` of every page that takes one: its session's (else NotSignedIn)."""
    token = request.cookies.get(SESSION_COOKIE)
    tenant = await deps.stores.sessions.tenant_for(token) if token else None
    if tenant is None:
        raise NotSignedIn
    return tenant


def to_sign_in(request: Request[Any, Any, Any], _: NotSignedIn) -> Redirect:
    # (303: a form posted while signed out is not posted again to the sign-in page)
    return Redirect("/dashboard/login", status_code=303 if request.method == "POST" else 302)


class DashboardPages(Controller):
    """Base of the dashboard's page groups: set `path` under /dashboard. A handler that
    takes `tenant: str` is for signed-in visitors only."""

    include_in_schema = False
    response_headers = SECURITY_HEADERS
    dependencies: Dependencies = {"tenant": Provide(signed_in_tenant)}  # noqa: RUF012 (Litestar's own layer attribute)
    exception_handlers: ExceptionHandlersMap = {NotSignedIn: to_sign_in}  # noqa: RUF012 (the same)

    def _page(self, name: str, deps: EdgeDeps, **context: Any) -> Template:
        return Template(template_name=name, context={"notices": deps.notices, "observer": deps.observer_name, **context})
