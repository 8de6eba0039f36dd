"""The HTTP side of providers: one pooled HTTP client, fallbacks, safe retries, error mapping.

Retry policy (`open_chat`): a connection that could not be opened (nothing was sent) is
retried once on the same route; anything that may have reached the provider is never
repeated there. A 429, a 5xx, a timeout or a connection failure moves on to the next route
of the chain (the configured fallbacks); any other 4xx is the client's problem and is
returned at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Mapping
from typing import Any, Protocol

import msgspec

from memgate_core.errors import GatewayError, InvalidRequest, UpstreamError, UpstreamTimeout
from memgate_providers import http
from memgate_providers.base import Provider
from memgate_providers.config import Timeouts, config_from_env
from memgate_providers.providers import canonical_name
from memgate_providers.registry import NO_KEYS, ProviderRegistry, Route, key_settings, usable

__all__ = ["Completion", "ProviderClient", "Timeouts", "UpstreamAuthError", "UpstreamStatusError"]

log = logging.getLogger("memgate.providers")

class BuildRequest(Protocol):
    def __call__(self, body: bytes, *, api_key: str | None) -> http.Request: ...


CONNECT_RETRY_DELAY = 0.05  # seconds before the one retry of a connection that failed to open


class UpstreamStatusError(GatewayError):
    """The provider said no: its status and (when OpenAI-shaped) its error are passed on."""

    def __init__(self, status: int, error: dict[str, Any], provider: str, *,
                 headers: dict[str, str] | None = None) -> None:
        message = str(error.get("message") or f"provider '{provider}' returned HTTP {status}")
        super().__init__(f"Upstream provider '{provider}': {message}", code=error.get("code") and str(error["code"]),
                         headers=headers)
        self.upstream_status = status
        self.status = status if status < 500 else 502
        self.type = str(error.get("type") or ("upstream_error" if status >= 500 else "invalid_request_error"))
        if status == 429:
            self.type = "rate_limit_error"


class UpstreamAuthError(GatewayError):
    """The provider refused memgate's own provider key: a gateway configuration problem,
    not the caller's (their memgate key was fine), so neither a 401 nor the provider's text."""

    status = 502
    type = "upstream_error"
    code = "upstream_auth_failed"

    def __init__(self, status: int, provider: str) -> None:
        super().__init__(f"Upstream provider '{provider}' rejected the gateway's provider key (HTTP {status}); "
                         "check its API key in memgate's configuration.")
        self.upstream_status = status


class Completion(msgspec.Struct, frozen=True):
    """A completion's text, the route that gave it, and what the provider reported (None: nothing)."""

    text: str
    route: Route
    model: str | None = None  # the model the provider says answered
    response_id: str | None = None
    finish_reason: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None


class _RouteFailed(Exception):
    """One route did not answer; `error` is what the client sees if no other route does."""

    def __init__(self, error: GatewayError, *, fallback: bool) -> None:
        super().__init__(error.message)
        self.error = error
        self.fallback = fallback


class ProviderClient:
    def __init__(self, registry: ProviderRegistry, *, timeouts: Timeouts | None = None) -> None:
        self.registry = registry
        self.timeouts = timeouts or Timeouts()
        t = self.timeouts
        self.http = http.HTTPClient(connect_timeout=t.connect, read_timeout=t.first_byte)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ProviderClient:
        """Providers, aliases, fallbacks and timeouts from MEMGATE_CONFIG (if set) and env.

        Raises ConfigError (a ValueError) with a message naming the file or variable and key.
        """
        env = os.environ if env is None else env
        config = config_from_env(env)
        return cls(ProviderRegistry.from_env(env, config=config), timeouts=Timeouts.from_env(env, config))

    # ------------------------------------------------------------------ chat

    async def open_chat(self, model: str, body: dict[str, Any], *,
                        api_keys: Mapping[str, str | None] = NO_KEYS) -> tuple[http.Response, Route]:
        """Send a chat completion along the model's chain; return the first good response
        (its body not yet read: streaming-safe) and the route that gave it.

        `body` is the client's request; `model` is replaced by each route's upstream name.
        `api_keys`: the caller's own keys by provider (bring your own): a route of a provider
        in it goes out with that key (None: the caller has one that cannot be read, and the
        route is skipped rather than sent with memgate's key); other routes use memgate's
        keys and are skipped when their provider has none.
        Raises the last route's UpstreamStatusError / UpstreamError / UpstreamTimeout, or
        InvalidRequest when no route has a key.
        """
        response, route, _ = await self._open_chain(model, body, None, api_keys=api_keys)
        return response, route

    async def open_messages(self, model: str, messages: dict[str, Any], chat: dict[str, Any], *,
                            api_keys: Mapping[str, str | None] = NO_KEYS) -> tuple[http.Response, Route, bool]:
        """`open_chat` for an Anthropic Messages request: `messages` goes to routes whose
        provider speaks that API, `chat` (its translation) to the others. The flag says
        which of the two the response answers (True: the Messages API's)."""
        return await self._open_chain(model, chat, messages, api_keys=api_keys)

    async def _open_chain(self, model: str, chat: dict[str, Any], messages: dict[str, Any] | None, *,
                          api_keys: Mapping[str, str | None]) -> tuple[http.Response, Route, bool]:
        chain = self.registry.chain(model)
        deadline = time.monotonic() + self.timeouts.total
        encoded: dict[tuple[str, bool], bytes] = {}
        failure: _RouteFailed | None = None
        for index, (provider, route) in enumerate(chain):
            if not usable(provider, route, api_keys):
                continue
            if failure is not None and time.monotonic() >= deadline:
                break  # the total time is spent: report the last real failure
            native = messages is not None and speaks_messages(provider)
            if (route.model, native) not in encoded:
                body = messages if native and messages is not None else chat
                encoded[route.model, native] = msgspec.json.encode({**body, "model": route.model})
            build = _messages_request(provider) if native else provider.build_request
            key = api_keys.get(route.provider)  # (None: memgate's)
            try:
                return await self._send(provider, encoded[route.model, native], key, deadline, build=build), route, native
            except _RouteFailed as failed:
                if not failed.fallback:
                    raise failed.error from None
                failure = failed
                if index + 1 < len(chain):
                    log.warning("%s failed (%s); trying the next fallback of '%s'", route.name, failed.error.message,
                                model)
        if failure is None:
            raise _not_configured(model, chain)
        raise failure.error

    async def open(self, provider: Provider, body: bytes, *, api_key: str | None) -> http.Response:
        """Send one request to one provider (no fallbacks); the response body is not yet read."""
        try:
            return await self._send(provider, body, api_key, time.monotonic() + self.timeouts.total)
        except _RouteFailed as failed:
            raise failed.error from None

    async def complete(self, model: str, messages: list[dict[str, Any]], **params: Any) -> Completion:
        """A non-streaming completion for memgate's own agents (the Observer): the text, the
        route that answered, and what the provider said about its answer."""
        response, route = await self.open_chat(model, {"model": model, "messages": messages, **params})
        try:
            data = msgspec.json.decode(await response.aread())
        finally:
            await response.aclose()
        choice = data["choices"][0]
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        return Completion(
            choice["message"].get("content") or "", route, model=_str_or_none(data.get("model")),
            response_id=_str_or_none(data.get("id")), finish_reason=_str_or_none(choice.get("finish_reason")),
            input_tokens=_int_or_none(usage.get("prompt_tokens")),
            output_tokens=_int_or_none(usage.get("completion_tokens")),
        )

    async def embed(self, model: str, texts: list[str]) -> list[list[float]]:
        """Embeddings from a provider's /embeddings endpoint (OpenAI format), in input order.

        No fallbacks: vectors of different models do not belong in one index.
        """
        provider, route = self.registry.route(model)
        body = msgspec.json.encode({"model": route.model, "input": texts})
        try:
            response = await self._send(provider, body, None, time.monotonic() + self.timeouts.total,
                                        build=provider.embeddings_request)
        except _RouteFailed as failed:
            raise failed.error from None
        try:
            data = msgspec.json.decode(await response.aread())
        finally:
            await response.aclose()
        try:
            items = sorted(data["data"], key=lambda item: item["index"])
            vectors = [[float(x) for x in item["embedding"]] for item in items]
        except (KeyError, TypeError, ValueError) as exc:
            raise UpstreamError(f"Upstream provider '{route.provider}' returned malformed embeddings.") from exc
        if len(vectors) != len(texts):
            raise UpstreamError(f"Upstream provider '{route.provider}' returned {len(vectors)} embeddings "
                                f"for {len(texts)} texts.")
        return vectors

    async def _send(self, provider: Provider, body: bytes, api_key: str | None, deadline: float,
                    *, build: BuildRequest | None = None) -> http.Response:
        """One route (`build`: which of its APIs, chat completions by default): a connection
        that failed to open is retried once; nothing else is."""
        name = provider.spec.name
        build = build or provider.build_request
        for attempt in (1, 2):
            request = build(body, api_key=api_key)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _RouteFailed(UpstreamTimeout(
                    f"Upstream provider '{name}' was not tried: the request's total time "
                    f"({self.timeouts.total:g} s) is spent."), fallback=False)
            try:
                response = await self.http.send(request, connect_timeout=min(self.timeouts.connect, remaining),
                                                read_timeout=min(self.timeouts.first_byte, remaining))
            except http.InvalidHeader as exc:  # e.g. a key with a line break: no provider would take it
                raise _RouteFailed(InvalidRequest(f"A header for provider '{name}' cannot be sent: {exc}"),
                                   fallback=False) from exc
            except http.ConnectError as exc:  # the connection never opened: nothing was sent
                if attempt == 1:
                    log.info("connecting to '%s' failed (%s); retrying once", name, type(exc).__name__)
                    await asyncio.sleep(CONNECT_RETRY_DELAY)
                    continue
                # The reason (refused, DNS, TLS, proxy) names hosts and addresses: the operator's
                # log has it, a caller gets its kind.
                log.warning("provider '%s' is unreachable: %s", name, exc)
                raise _RouteFailed(UpstreamError(
                    f"Upstream provider '{name}' is unreachable ({type(exc).__name__}; memgate's log says why)."),
                    fallback=True) from exc
            except http.TimeoutException as exc:
                raise _RouteFailed(UpstreamTimeout(
                    f"Upstream provider '{name}' timed out ({type(exc).__name__})."), fallback=True) from exc
            except http.HTTPError as exc:
                raise _RouteFailed(UpstreamError(
                    f"Upstream provider '{name}' is unreachable ({type(exc).__name__})."), fallback=True) from exc
            if response.status_code < 300:
                return response
            if response.status_code < 400:  # (not followed: a request with a key goes where it was configured)
                await response.aclose()
                location = response.headers.get("location", "")[:200]
                raise _RouteFailed(UpstreamError(
                    f"Upstream provider '{name}' answered with a redirect (HTTP {response.status_code})"
                    f"{f' to {location}' if location else ''}: is its base URL right (https)?"), fallback=True)
            try:
                raw = await response.aread()
            except http.HTTPError:
                raw = b""
            finally:
                await response.aclose()
            status = response.status_code
            retry_after = response.headers.get("retry-after")
            error: GatewayError
            if status in (401, 403) and api_key is None:  # memgate's configured key, not the caller's
                log.warning("provider '%s' rejected the configured API key (HTTP %d)", name, status)
                error = UpstreamAuthError(status, name)
            else:
                error = UpstreamStatusError(status, _error_of(raw), name,
                                            headers={"retry-after": retry_after} if retry_after else None)
            raise _RouteFailed(error, fallback=status == 429 or status >= 500)
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------ models

    async def fetch_models(self, provider_names: list[str] | None = None) -> list[dict[str, Any]]:
        """Ask providers for their models (GET {base_url}/models), as OpenAI model objects
        with ids `provider/model`. Default: every provider usable with memgate's keys.
        A provider that fails (or is unknown) is skipped."""
        if provider_names is None:
            names = [n for n, p in sorted(self.registry.providers.items()) if p.spec.configured]
        else:
            names = list(dict.fromkeys(canonical_name(n) for n in provider_names))
        results = await asyncio.gather(*(self._models_of(name) for name in names))
        seen: set[str] = set()
        data: list[dict[str, Any]] = []
        for name, ids in zip(names, results, strict=True):
            for model_id in ids:
                full = f"{name}/{model_id}"
                if full not in seen:
                    seen.add(full)
                    data.append({"id": full, "object": "model", "created": 0, "owned_by": name})
        return data

    async def _models_of(self, name: str) -> list[str]:
        provider = self.registry.providers.get(name)
        if provider is None:
            log.info("models of '%s' not fetched: no such provider", name)
            return []
        try:
            response = await self.http.send(provider.models_request(api_key=None))
            try:
                raw = await response.aread()
            finally:
                await response.aclose()
            if response.status_code >= 400:
                raise http.HTTPError(f"HTTP {response.status_code}")
            return provider.model_ids(msgspec.json.decode(raw))
        except (http.HTTPError, msgspec.DecodeError) as exc:
            log.info("models of '%s' not fetched (%s)", name, type(exc).__name__)
            return []

    async def close(self) -> None:
        await self.http.aclose()


def speaks_messages(provider: Provider) -> bool:
    """Whether the provider takes Anthropic Messages requests natively."""
    return provider.messages_request(b"", api_key=None) is not None


def _messages_request(provider: Provider) -> BuildRequest:
    def build(body: bytes, *, api_key: str | None) -> http.Request:
        request = provider.messages_request(body, api_key=api_key)
        assert request is not None  # (only asked of providers that speak it)
        return request
    return build


def _not_configured(model: str, chain: list[tuple[Provider, Route]]) -> InvalidRequest:
    spec = chain[0][0].spec
    name = chain[0][1].provider
    others = "" if len(chain) == 1 else " (nor do its fallbacks' providers)"
    return InvalidRequest(
        f"Provider '{name}' of model '{model}' has no API key{others}: set {key_settings(name, spec)}, or send "
        "your own key with X-Memory-Gateway-Authorization.",
        code="provider_not_configured", param="model",
    )


def _error_of(raw: bytes) -> dict[str, Any]:
    try:
        data = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return {"message": raw[:200].decode(errors="replace").strip() or None}
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        error: dict[str, Any] = data["error"]
        return error
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return {"message": data["error"]}
    return {}


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
