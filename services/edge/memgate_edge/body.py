"""Decoding a client's JSON body: every way it can be wrong is a 400 in the OpenAI shape."""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

from memgate_core.errors import InvalidRequest

T = TypeVar("T")


def decode_body(raw: bytes, type: type[T] = Any, *, what: str = "request") -> T:  # type: ignore[assignment]
    """`raw` as JSON of `type`; `what` names the request in the message of a wrong shape."""
    if not raw:
        raise InvalidRequest("Request body is empty; expected a JSON object.", code="invalid_json")
    try:
        return msgspec.json.decode(raw, type=type)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(f"Invalid {what}: {exc}.", code="invalid_type") from None
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"Request body is not valid JSON: {exc}.", code="invalid_json") from None
    except RecursionError:  # msgspec's answer to arrays or objects nested thousands deep
        raise InvalidRequest("Request body is nested too deeply.", code="invalid_json") from None
