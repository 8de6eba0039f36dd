"""One error hierarchy for the whole gateway, rendered in the OpenAI error shape.

Every failure a client can see is a `GatewayError`; the edge turns it into
`{"error": {"message", "type", "code", "param"}}` (code and param null when absent, as
OpenAI sends them) with the matching HTTP status.
"""

from __future__ import annotations

from typing import Any

import msgspec


class ErrorBody(msgspec.Struct):
    message: str
    type: str
    code: str | None = None
    param: str | None = None


class ErrorEnvelope(msgspec.Struct):
    error: ErrorBody


class GatewayError(Exception):
    status: int = 500
    type: str = "server_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.param = param
        self.headers = headers or {}

    def envelope(self) -> ErrorEnvelope:
        return ErrorEnvelope(ErrorBody(self.message, self.type, self.code, self.param))

    def to_json(self) -> bytes:
        return msgspec.json.encode(self.envelope())


class InvalidRequest(GatewayError):
    status = 400
    type = "invalid_request_error"


class AuthenticationFailed(GatewayError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class PermissionDenied(GatewayError):
    status = 403
    type = "permission_error"


class NotFound(GatewayError):
    status = 404
    type = "not_found"
    code = "not_found"


class Conflict(GatewayError):
    status = 409
    type = "invalid_request_error"
    code = "conflict"


class PayloadTooLarge(GatewayError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class RateLimitedBody(ErrorBody):
    scope: str | None = None  # which of a key's limits was reached
    retry_after_seconds: int | None = None


class RateLimited(GatewayError):
    """A 429 whose body also says the limit's scope and the seconds to wait."""

    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, scope: str | None = None, retry_after_seconds: int | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message, code=code, headers=headers)
        self.scope = scope
        self.retry_after_seconds = retry_after_seconds

    def envelope(self) -> ErrorEnvelope:
        return ErrorEnvelope(RateLimitedBody(self.message, self.type, self.code, self.param, scope=self.scope,
                                             retry_after_seconds=self.retry_after_seconds))


class UpstreamError(GatewayError):
    """The provider answered with an error or could not be reached."""

    status = 502
    type = "upstream_error"
    code = "bad_gateway"

    def __init__(self, message: str, *, status: int = 502, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.status = status


class UpstreamTimeout(UpstreamError):
    code = "upstream_timeout"

    def __init__(self, message: str, **kw: Any) -> None:
        super().__init__(message, status=504, **kw)


class ServiceUnavailable(GatewayError):
    status = 503
    type = "server_error"
    code = "service_unavailable"
