"""Every error leaves the edge in the OpenAI error shape."""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException

from memgate_core.errors import ErrorBody, ErrorEnvelope, GatewayError, ServiceUnavailable
from memgate_store import unreachable

log = logging.getLogger("memgate.edge")

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error", 404: "not_found",
          405: "invalid_request_error", 413: "invalid_request_error", 429: "rate_limit_error"}


def _respond(status: int, body: ErrorEnvelope, headers: dict[str, str] | None = None) -> Response[Any]:
    return Response(body, status_code=status, headers=headers, media_type="application/json")


def gateway_error(_: Request[Any, Any, Any], exc: GatewayError) -> Response[Any]:
    if exc.status >= 500:
        log.warning("%s: %s", type(exc).__name__, exc.message)
    return _respond(exc.status, exc.envelope(), exc.headers)


def http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    status = exc.status_code
    message = exc.detail or "Request failed."
    code = None
    if isinstance(exc, ValidationException) and exc.extra:
        message = f"{message}: {exc.extra}"
    if status == 413:
        code, message = "request_too_large", "Request body is larger than the configured limit (MEMGATE_MAX_BODY_BYTES)."
    elif status == 404:
        code = "unknown_route"
    body = ErrorEnvelope(ErrorBody(message, _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error"), code))
    return _respond(status, body, dict(exc.headers or {}))


def unexpected_error(_: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    if unreachable(exc):
        # An outage, not a bug: say so, once in a while (not once per request), and let
        # clients retry; the pool reconnects by itself when Postgres is back.
        if _outage_log.allow():
            log.warning("Postgres unreachable (%s: %s); answering 503%s", type(exc).__name__, exc,
                        _outage_log.suppressed_note())
        unavailable = ServiceUnavailable("memgate's database is unreachable just now; retry shortly.",
                                         code="database_unavailable", headers={"Retry-After": str(RETRY_AFTER_S)})
        return _respond(503, unavailable.envelope(), unavailable.headers)
    log.exception("unhandled error", exc_info=exc)
    return _respond(500, ErrorEnvelope(ErrorBody("Internal error in memgate.", "server_error", "internal_error")))


class RateLimitedLog:
    """At most one line per `every` seconds; says how many were held back in between."""

    def __init__(self, every: float) -> None:
        self.every = every
        self._last = -math.inf
        self._held = 0

    def allow(self) -> bool:
        now = time.monotonic()
        if now - self._last >= self.every:
            self._last = now
            return True
        self._held += 1
        return False

    def suppressed_note(self) -> str:
        held, self._held = self._held, 0
        return f" ({held} more since the last such line)" if held else ""


RETRY_AFTER_S = 5
_outage_log = RateLimitedLog(every=10.0)


EXCEPTION_HANDLERS: dict[Any, Any] = {
    GatewayError: gateway_error,
    HTTPException: http_error,
    Exception: unexpected_error,
}
