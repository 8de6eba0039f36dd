"""The error hierarchy and its OpenAI-shaped JSON envelope."""

from __future__ import annotations

import msgspec
import pytest

from memgate_core.errors import (
    AuthenticationFailed,
    GatewayError,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    RateLimited,
    ServiceUnavailable,
    UpstreamError,
    UpstreamTimeout,
)


def test_envelope_has_openai_shape() -> None:
    err = InvalidRequest("bad model", code="invalid_type", param="model")
    body = msgspec.json.decode(err.to_json())
    assert body == {
        "error": {"message": "bad model", "type": "invalid_request_error", "code": "invalid_type", "param": "model"}
    }


def test_envelope_always_has_code_and_param_as_openai_sends_them() -> None:
    body = msgspec.json.decode(GatewayError("boom").to_json())
    assert body == {"error": {"message": "boom", "type": "server_error", "code": None, "param": None}}


def test_class_default_code_is_used_unless_overridden() -> None:
    assert msgspec.json.decode(RateLimited("slow down").to_json())["error"]["code"] == "rate_limit_exceeded"
    assert RateLimited("slow down", code="custom").code == "custom"
    # Overriding on one instance does not leak into the class.
    assert RateLimited("again").code == "rate_limit_exceeded"


@pytest.mark.parametrize(
    ("error", "status", "type_", "code"),
    [
        (InvalidRequest("x"), 400, "invalid_request_error", None),
        (AuthenticationFailed("x"), 401, "authentication_error", "invalid_api_key"),
        (PermissionDenied("x"), 403, "permission_error", None),
        (NotFound("x"), 404, "not_found", "not_found"),
        (PayloadTooLarge("x"), 413, "invalid_request_error", "request_too_large"),
        (RateLimited("x"), 429, "rate_limit_error", "rate_limit_exceeded"),
        (UpstreamError("x"), 502, "upstream_error", "bad_gateway"),
        (UpstreamTimeout("x"), 504, "upstream_error", "upstream_timeout"),
        (ServiceUnavailable("x"), 503, "server_error", "service_unavailable"),
    ],
)
def test_statuses_types_and_codes(error: GatewayError, status: int, type_: str, code: str | None) -> None:
    assert isinstance(error, GatewayError)
    assert (error.status, error.type, error.code) == (status, type_, code)


def test_upstream_error_status_is_per_instance() -> None:
    assert UpstreamError("x", status=503).status == 503
    assert UpstreamError("y").status == 502
    assert isinstance(UpstreamTimeout("t"), UpstreamError)


def test_headers_default_to_empty_dict_and_message_is_str() -> None:
    err = RateLimited("wait", headers={"retry-after": "3"})
    assert err.headers == {"retry-after": "3"}
    assert str(err) == "wait"
    assert InvalidRequest("x").headers == {}
