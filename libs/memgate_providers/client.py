"""The HTTP side of providers: one pooled httpx client and upstream error mapping."""

from __future__ import annotations

from typing import Any

import httpx
import msgspec

from memgate_core.errors import GatewayError, UpstreamError, UpstreamTimeout
from memgate_providers.base import Provider
from memgate_providers.registry import ProviderRegistry


class Timeouts(msgspec.Struct, frozen=True):
    connect: float = 5.0
    first_byte: float = 120.0  # reasoning models can think for a long while
    total: float = 600.0


class UpstreamStatusError(GatewayError):
    """The provider said no: its status and (when OpenAI-shaped) its error are passed on."""

    def __init__(self, status: int, error: dict[str, Any], provider: str) -> None:
        message = str(error.get("message") or f"provider '{provider}' returned HTTP {status}")
        super().__init__(f"Upstream provider '{provider}': {message}", code=error.get("code") and str(error["code"]))
        self.status = status if status < 500 else 502
        self.type = str(error.get("type") or ("upstream_error" if status >= 500 else "invalid_request_error"))


class ProviderClient:
    def __init__(self, registry: ProviderRegistry, *, timeouts: Timeouts | None = None) -> None:
        self.registry = registry
        self.timeouts = timeouts or Timeouts()
        self.http = httpx.AsyncClient(
            timeout=httpx.Timeout(self.timeouts.first_byte, connect=self.timeouts.connect),
            limits=httpx.Limits(max_connections=512, max_keepalive_connections=128, keepalive_expiry=60),
        )

    async def open(self, provider: Provider, body: bytes, *, api_key: str | None) -> httpx.Response:
        """Send the request and return the response with its body not yet read (streaming-safe)."""
        request = provider.build_request(self.http, body, api_key=api_key)
        try:
            response = await self.http.send(request, stream=True)
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(f"Upstream provider '{provider.spec.name}' timed out ({type(exc).__name__}).") from exc
        except httpx.HTTPError as exc:
            raise UpstreamError(f"Upstream provider '{provider.spec.name}' is unreachable ({type(exc).__name__}).") from exc
        if response.status_code >= 400:
            raw = await response.aread()
            await response.aclose()
            raise UpstreamStatusError(response.status_code, _error_of(raw), provider.spec.name)
        return response

    async def complete_text(self, model: str, messages: list[dict[str, Any]], **params: Any) -> str:
        """A non-streaming completion for memgate's own agents (the Observer); returns the text."""
        provider, route = self.registry.route(model)
        body = msgspec.json.encode({"model": route.model, "messages": messages, **params})
        response = await self.open(provider, body, api_key=None)
        try:
            data = msgspec.json.decode(await response.aread())
        finally:
            await response.aclose()
        return data["choices"][0]["message"].get("content") or ""

    async def close(self) -> None:
        await self.http.aclose()


def _error_of(raw: bytes) -> dict[str, Any]:
    try:
        data = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return {"message": raw[:200].decode(errors="replace").strip() or None}
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        return data["error"]
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return {"message": data["error"]}
    return {}
