"""The fake provider as a plain ASGI app: the OpenAI routes, Anthropic's Messages route
and a small control API.

Routes:
    POST /v1/chat/completions   record, then answer (JSON or SSE stream)
    POST /v1/messages           the same, speaking the Anthropic Messages API (key from
                                x-api-key or a bearer header, Anthropic-shaped errors)
    GET  /v1/models             a small model list
    GET  /_fake/requests        recorded requests [{"path","headers","body","api_key"}]
    POST /_fake/reset           forget requests, restore the starting behaviour
    GET  /_fake/behavior        the current behaviour
    POST /_fake/behavior        merge a partial behaviour, see `Behavior`
    GET  /_fake/health          {"ok": true}
    POST /v1/embeddings         deterministic bag-of-words vectors (64 dims)
"""

from __future__ import annotations

import asyncio
import itertools
import math
import re
import time
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from memgate_testing.fake_provider import _anthropic, _replies
from memgate_testing.fake_provider._state import FakeState

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

MODELS = ("fake-model", "gpt-4o-mini", "gpt-4o")
FAST_REPLY = "ok"

_JSON = [(b"content-type", b"application/json")]
_SSE = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
_DONE = b"data: [DONE]\n\n"
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.decode


class _StreamOptions(msgspec.Struct):
    include_usage: bool = False


class _FastRequest(msgspec.Struct):
    """The few fields fast mode reads; msgspec skips the rest without building it."""

    model: str = "fake-model"
    stream: bool = False
    stream_options: _StreamOptions | None = None


_fast_decoder = msgspec.json.Decoder(_FastRequest)


def _error_type(status: int) -> str:
    if status >= 500:
        return "server_error"
    return {401: "authentication_error", 403: "permission_error", 404: "not_found_error", 429: "rate_limit_error"}.get(
        status, "invalid_request_error"
    )


def _error_body(status: int, message: str, code: str | None) -> bytes:
    return _encode({"error": {"message": message, "type": _error_type(status), "param": None, "code": code}})


def _fake_failure(status: int, message: str) -> bytes:
    return _error_body(status, message, "fake_failure")


def _anthropic_error(status: int, message: str) -> bytes:
    return _encode(_anthropic.error(status, message))


def _bearer(headers: dict[str, str]) -> str | None:
    scheme, _, key = headers.get("authorization", "").partition(" ")
    key = key.strip()
    return key if scheme.lower() == "bearer" and key else None


def _anthropic_key(headers: dict[str, str]) -> str | None:
    """Anthropic clients send `x-api-key`; gateways may pass a bearer token on instead."""
    return headers.get("x-api-key", "").strip() or _bearer(headers)


def _sse(obj: Any) -> bytes:
    return b"data: " + _encode(obj) + b"\n\n"


def _named_sse(event: dict[str, Any]) -> bytes:
    """An Anthropic stream event: the `event:` line repeats the data's `type`."""
    return b"event: " + str(event["type"]).encode() + b"\n" + _sse(event)


EMBEDDING_DIM = 64


def bag_of_words(text: str) -> list[float]:
    vector = [0.0] * EMBEDDING_DIM
    for word in re.findall(r"[a-z0-9]+", text.lower()):
        vector[zlib.crc32(word.encode()) % EMBEDDING_DIM] += 1.0
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [x / norm for x in vector]


async def _read_body(receive: Receive) -> bytes:
    parts = []
    while True:
        message = await receive()
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(parts)


async def _respond(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] = _JSON) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class FakeProviderApp:
    """ASGI callable; one instance per server, sharing `state` with the handle that started it."""

    def __init__(
        self,
        state: FakeState,
        *,
        fast: bool = False,
        expected_key: str | None = None,
        responder: _replies.Responder | None = None,
    ) -> None:
        self.state = state
        self.fast = fast
        self.expected_key = expected_key
        self.responder = responder
        self._fast_cache: dict[tuple[str, bool, bool], bytes] = {}
        self._fast_ids = itertools.count(1)
        self._draining = False
        self._wake: asyncio.Event | None = None

    def drain(self) -> None:
        """Cut every pending and future delay short, so in-flight responses finish now.

        Call it from the server's event loop (the server does so when shutting down).
        """
        self._draining = True
        if self._wake is not None:
            self._wake.set()

    async def _pause(self, ms: int) -> None:
        """Sleep `ms` milliseconds, unless the server is draining."""
        if ms <= 0 or self._draining:
            return
        if self._wake is None:
            self._wake = asyncio.Event()
        try:
            await asyncio.wait_for(self._wake.wait(), ms / 1000)
        except TimeoutError:
            pass

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        route = (scope["method"], scope["path"].rstrip("/") or "/")
        if route == ("POST", "/v1/chat/completions"):
            await self._chat(scope, receive, send)
        elif route == ("POST", "/v1/messages"):
            await self._messages(scope, receive, send)
        elif route[1] == "/v1/messages":
            await _respond(send, 404, _anthropic_error(404, f"Unknown route: {route[0]} {route[1]}"))
        elif route == ("GET", "/v1/models"):
            await self._models(scope, send)
        elif route == ("POST", "/v1/embeddings"):
            await self._embeddings(scope, receive, send)
        elif route[1].startswith("/_fake/"):
            await self._control(route, receive, send)
        else:
            await _respond(send, 404, _error_body(404, f"Unknown route: {route[0]} {route[1]}", "unknown_url"))

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    # ----------------------------------------------------------------- auth

    async def _authorize(self, headers: dict[str, str], send: Send) -> bool:
        """Send a 401 and return False unless a (matching) bearer key is present."""
        key = _bearer(headers)
        if key is None:
            message = "You didn't provide an API key. Use an Authorization: Bearer header."
        elif self.expected_key is not None and key != self.expected_key:
            message = "Incorrect API key provided."
        else:
            return True
        await _respond(send, 401, _error_body(401, message, "invalid_api_key"))
        return False

    # ----------------------------------------------------------------- OpenAI routes

    async def _models(self, scope: Scope, send: Send) -> None:
        if not await self._authorize(_headers(scope), send):
            return
        created = int(time.time())
        data = [{"id": m, "object": "model", "created": created, "owned_by": "memgate-fake"} for m in MODELS]
        await _respond(send, 200, _encode({"object": "list", "data": data}))

    async def _embeddings(self, scope: Scope, receive: Receive, send: Send) -> None:
        """OpenAI embeddings: deterministic bag-of-words vectors (EMBEDDING_DIM), good enough
        for texts that share words to be near each other."""
        raw = await _read_body(receive)
        headers = _headers(scope)
        try:
            body: Any = _decode(raw)
        except msgspec.DecodeError:
            body = None
        self.state.record({"path": scope["path"], "headers": headers, "body": body, "api_key": _bearer(headers)})
        if not await self._authorize(headers, send):
            return
        texts = body.get("input") if isinstance(body, dict) else None
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            await _respond(send, 400, _error_body(400, "'input' must be a string or an array of strings.",
                                                  "invalid_request"))
            return
        if await self._maybe_fail(send):
            return
        data = [{"object": "embedding", "index": i, "embedding": bag_of_words(t)} for i, t in enumerate(texts)]
        await _respond(send, 200, _encode({"object": "list", "data": data, "model": body.get("model"),
                                           "usage": {"prompt_tokens": 0, "total_tokens": 0}}))

    async def _chat(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = await _read_body(receive)
        headers = _headers(scope)
        if self.fast:
            await self._chat_fast(raw, headers, send)
            return
        body = self._record(scope, headers, raw, _bearer(headers))
        if not await self._authorize(headers, send):
            return
        problem = _invalid(body)
        if problem:
            await _respond(send, 400, _error_body(400, problem, "invalid_request"))
            return
        if await self._maybe_fail(send):
            return
        behavior = self.state.behavior
        await self._pause(behavior.headers_delay_ms)
        reply = _replies.compose_reply(body, behavior.reply, self.responder)
        model = body["model"]
        if body.get("stream") is True:
            options = body.get("stream_options")
            include_usage = isinstance(options, dict) and options.get("include_usage") is True
            events = [_sse(c) for c in _replies.chunks(reply, model, include_usage)]
            await self._stream([*events, _DONE], send, receive)
        else:
            await self._pause(behavior.delay_ms)
            await _respond(send, 200, _encode(_replies.completion(reply, model)))

    def _record(self, scope: Scope, headers: dict[str, str], raw: bytes, api_key: str | None) -> Any:
        """Record the request (the raw text when it is not JSON) and return the parsed body, or None."""
        try:
            body: Any = _decode(raw)
        except msgspec.DecodeError:
            body = None
        recorded = body if body is not None else raw.decode("utf-8", "replace")
        self.state.record({"path": scope["path"], "headers": headers, "body": recorded, "api_key": api_key})
        return body

    async def _chat_fast(self, raw: bytes, headers: dict[str, str], send: Send) -> None:
        """Benchmark mode: no recording, no answer logic, cached encoded replies."""
        if not await self._authorize(headers, send):
            return
        try:
            request = _fast_decoder.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            await _respond(send, 400, _error_body(400, f"Invalid request body: {exc}", "invalid_request"))
            return
        if await self._maybe_fail(send):
            return
        include_usage = request.stream_options is not None and request.stream_options.include_usage
        key = (request.model, request.stream, include_usage)
        payload = self._fast_cache.get(key)
        if payload is None:
            payload = self._fast_payload(*key)
            if len(self._fast_cache) < 256:
                self._fast_cache[key] = payload
        behavior = self.state.behavior
        await self._pause(behavior.headers_delay_ms)
        if request.stream:
            if behavior.delay_ms or behavior.chunk_delay_ms:
                await self._stream([event + b"\n\n" for event in payload.split(b"\n\n")[:-1]], send)
            else:
                await _respond(send, 200, payload, _SSE)
        else:
            await self._pause(behavior.delay_ms)
            await _respond(send, 200, payload)

    def _fast_payload(self, model: str, stream: bool, include_usage: bool) -> bytes:
        reply = _replies.Reply(FAST_REPLY, None, "stop", 1, 1)
        completion_id = f"chatcmpl-fast{next(self._fast_ids)}"
        if not stream:
            return _encode(_replies.completion(reply, model, completion_id))
        return b"".join(_sse(c) for c in _replies.chunks(reply, model, include_usage, completion_id)) + _DONE

    async def _maybe_fail(self, send: Send, error_body: Callable[[int, str], bytes] = _fake_failure) -> bool:
        status = self.state.take_failure()
        if status is None:
            return False
        await self._pause(self.state.behavior.delay_ms)
        message = f"The fake provider was told to fail with status {status}."
        await _respond(send, status, error_body(status, message))
        return True

    async def _stream(self, events: list[bytes], send: Send, receive: Receive | None = None) -> None:
        """Send headers at once, then each SSE event (the last is [DONE] or message_stop) as its
        own body frame.

        With `receive`, a caller that disconnects mid-stream is noticed and recorded
        (tests use it to check that a gateway cancels upstream requests).
        """
        behavior = self.state.behavior
        gone = asyncio.Event()

        async def watch() -> None:
            while receive is not None:
                if (await receive())["type"] == "http.disconnect":
                    gone.set()
                    return

        watcher = asyncio.create_task(watch())
        try:
            await send({"type": "http.response.start", "status": 200, "headers": _SSE})
            await self._pause(behavior.delay_ms)
            for index, event in enumerate(events):
                if index:
                    await self._pause(behavior.chunk_delay_ms)
                if gone.is_set():
                    self.state.record_stream_outcome("client_disconnected")
                    return
                if behavior.unterminated_end and index == len(events) - 1:
                    event = event.rstrip(b"\n")
                await send({"type": "http.response.body", "body": event, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            self.state.record_stream_outcome("completed")
        finally:
            watcher.cancel()

    # ----------------------------------------------------------------- Anthropic route

    async def _messages(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Anthropic Messages: the chat route's record / auth / fail / pause steps, with the
        reply composed from the request translated to a chat body (fast mode included)."""
        raw = await _read_body(receive)
        headers = _headers(scope)
        key = _anthropic_key(headers)
        body = self._record(scope, headers, raw, key)
        if key is None or (self.expected_key is not None and key != self.expected_key):
            message = "x-api-key header is required" if key is None else "invalid x-api-key"
            await _respond(send, 401, _anthropic_error(401, message))
            return
        problem = _anthropic.invalid(body)
        if problem:
            await _respond(send, 400, _anthropic_error(400, problem))
            return
        if await self._maybe_fail(send, _anthropic_error):
            return
        behavior = self.state.behavior
        await self._pause(behavior.headers_delay_ms)
        reply = _replies.compose_reply(_anthropic.to_chat(body), behavior.reply, self.responder)
        model = body["model"]
        if body.get("stream") is True:
            await self._stream([_named_sse(e) for e in _anthropic.events(reply, model)], send, receive)
        else:
            await self._pause(behavior.delay_ms)
            await _respond(send, 200, _encode(_anthropic.message(reply, model)))

    # ----------------------------------------------------------------- control API

    async def _control(self, route: tuple[str, str], receive: Receive, send: Send) -> None:
        method, path = route
        if (method, path) == ("GET", "/_fake/requests"):
            await _respond(send, 200, _encode(self.state.requests()))
        elif (method, path) == ("POST", "/_fake/reset"):
            await _read_body(receive)
            self.state.reset()
            await _respond(send, 200, b'{"ok":true}')
        elif (method, path) == ("GET", "/_fake/behavior"):
            await _respond(send, 200, _encode(self.state.behavior))
        elif (method, path) == ("POST", "/_fake/behavior"):
            await self._set_behavior(await _read_body(receive), send)
        elif (method, path) == ("GET", "/_fake/health"):
            await _respond(send, 200, b'{"ok":true}')
        else:
            await _respond(send, 404, _error_body(404, f"Unknown control route: {method} {path}", "unknown_url"))

    async def _set_behavior(self, raw: bytes, send: Send) -> None:
        try:
            changes = _decode(raw) if raw.strip() else {}
            if not isinstance(changes, dict):
                raise msgspec.ValidationError("expected a JSON object")
            behavior = self.state.update_behavior(changes)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            await _respond(send, 400, _error_body(400, f"Invalid behaviour: {exc}", "invalid_behavior"))
            return
        await _respond(send, 200, _encode(behavior))


def _headers(scope: Scope) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in scope["headers"]:
        key, text = name.decode("latin-1").lower(), value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return headers


def _invalid(body: Any) -> str | None:
    """Why a chat request body is unacceptable, or None."""
    if not isinstance(body, dict):
        return "The request body must be a JSON object."
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "Missing required parameter: 'model'."
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "Missing required parameter: 'messages' (a non-empty array)."
    return None
