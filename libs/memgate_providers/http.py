"""memgate's upstream HTTP/1.1 client: pooled keep-alive connections on asyncio + httptools.

Why memgate has its own: every chat request is one POST to a provider, and a
general-purpose async client measured about 1 ms of CPU per request here, the largest
single part of memgate's overhead. This one measured about 40 µs (same machine, same
8 KB body). It does what talking to providers needs and nothing more: HTTP/1.1 over TCP
or TLS (verified, SNI), keep-alive pooling per origin, Content-Length, chunked and
close-delimited bodies (parsed by llhttp through httptools, the parser uvicorn uses),
streamed reads with back-pressure, connect / read timeouts, and HTTP proxies from
HTTP_PROXY / HTTPS_PROXY / NO_PROXY (CONNECT tunnels for https). Not supported:
redirects, compression (identity is what it asks for), HTTP/2, https:// proxy URLs.

Retries: a pooled connection the server closed while idle fails at once (within
STALE_WINDOW of sending, before any byte of the response) or answers 408; that request
is sent again on a new connection (the server never read it). Nothing else is retried
here (a connection lost later may have run the request); the provider client decides
about the rest.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import ipaddress
import ssl
import time
import urllib.request
from collections.abc import AsyncIterator, Mapping
from typing import cast
from urllib.parse import unquote, urlsplit

import certifi
import httptools
import msgspec

__all__ = [
    "ConnectError", "ConnectTimeout", "HTTPClient", "HTTPError", "InvalidHeader", "ReadTimeout", "RemoteProtocolError",
    "Request",
    "Response", "TimeoutException",
]

USER_AGENT = "memgate"
STALE_WINDOW = 1.0  # s: a pooled connection closed this soon after a send was closed while idle
HIGH_WATER = 256 * 1024  # buffered response bytes before the socket stops being read
LOW_WATER = 64 * 1024


class HTTPError(Exception):
    """Any failure talking to the upstream."""


class ConnectError(HTTPError):
    """The connection could not be opened: nothing was sent."""


class TimeoutException(HTTPError):
    """A connect or read timeout."""


class ConnectTimeout(TimeoutException):
    """Opening the connection took longer than the connect timeout: nothing was sent."""


class ReadTimeout(TimeoutException):
    """The response (its headers, or its next piece of body) took longer than the read timeout."""


class InvalidHeader(HTTPError):
    """A header name or value HTTP/1.1 cannot carry (line breaks, non-latin-1): nothing was sent."""


class RemoteProtocolError(HTTPError):
    """The upstream broke off or sent something that is not HTTP/1.1."""


class _StaleConnection(RemoteProtocolError):
    """A pooled connection was closed by the server before it answered anything."""


class Request(msgspec.Struct, frozen=True):
    """What a provider module describes; the client sends it."""

    method: str
    url: str
    headers: dict[str, str]  # lower-case names
    content: bytes = b""


class _Origin(msgspec.Struct, frozen=True):
    https: bool
    host: str
    port: int


class _Proxy(msgspec.Struct, frozen=True):
    host: str
    port: int
    authorization: str | None  # Proxy-Authorization, from credentials in the proxy URL


class _Target(msgspec.Struct, frozen=True):
    origin: _Origin
    path: str  # path and query (absolute URL for plain http through a proxy)
    host_header: str
    proxy: _Proxy | None = None


def _target(url: str, proxies: Mapping[str, str]) -> _Target:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConnectError(f"not an http(s) URL: {url!r}")
    https = parts.scheme == "https"
    default = 443 if https else 80
    port = parts.port or default
    host = parts.hostname
    shown = f"[{host}]" if ":" in host else host
    host_header = shown if port == default else f"{shown}:{port}"
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    proxy = _proxy_for(parts.scheme, host, proxies)
    if proxy is not None and not https:
        path = f"http://{host_header}{path}"  # a forward proxy wants the absolute form
    return _Target(_Origin(https, host, port), path, host_header, proxy)


def _proxy_for(scheme: str, host: str, proxies: Mapping[str, str]) -> _Proxy | None:
    url = proxies.get(scheme)
    bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]  # (public, not in typeshed)
    if not url or _is_loopback(host) or bypass(host, {"no": proxies.get("no", "")}):
        return None  # (like Go's net/http: local providers such as ollama never go through a proxy)
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme != "http" or not parts.hostname:
        raise ConnectError(f"unsupported proxy URL {parts.scheme}://{parts.hostname}: only http:// proxies are")
    authorization = None
    if parts.username is not None:
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        authorization = "Basic " + base64.b64encode(credentials).decode()
    return _Proxy(parts.hostname, parts.port or 80, authorization)


def _is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost.") or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _head(request: Request, target: _Target) -> bytes:
    lines = [f"{request.method} {target.path} HTTP/1.1", f"host: {target.host_header}",
             f"user-agent: {USER_AGENT}", "accept-encoding: identity"]
    for name, value in request.headers.items():
        if name in ("host", "content-length", "transfer-encoding", "connection", "proxy-authorization"):
            continue  # framing is this client's business
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name or ":" in name:
            raise InvalidHeader(f"invalid header {name!r}: it would not be sent")
        lines.append(f"{name}: {value}")
    if request.content or request.method in ("POST", "PUT", "PATCH"):
        lines.append(f"content-length: {len(request.content)}")
    if target.proxy is not None and target.proxy.authorization and not target.origin.https:
        lines.append(f"proxy-authorization: {target.proxy.authorization}")
    try:
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    except UnicodeEncodeError:
        raise InvalidHeader("a header holds characters HTTP/1.1 cannot carry: it would not be sent") from None


class Response:
    """A response whose body is read as it arrives: `aiter_raw()`, or `aread()` for all of it.

    Always `aclose()` it: a fully read body gives the connection back to the pool; an
    unfinished one closes the connection, which tells the provider to stop.
    """

    def __init__(self, connection: _Connection, client: HTTPClient, read_timeout: float) -> None:
        self._connection = connection
        self._client = client
        self._read_timeout = read_timeout
        self._loop = asyncio.get_running_loop()
        self._raw_headers: list[tuple[bytes, bytes]] = []
        self._headers_ready: asyncio.Future[None] = self._loop.create_future()
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._complete = False
        self._keep_alive = False
        self._error: HTTPError | None = None
        self._released = False
        self._got_bytes = False
        self._sent_at = 0.0
        self.status_code = 0
        self.headers: dict[str, str] = {}

    # ---------------------------------------------------------------- parser side

    def _on_header(self, name: bytes, value: bytes) -> None:
        self._raw_headers.append((name, value))

    def _on_headers_complete(self, status: int) -> None:
        self.status_code = status
        headers: dict[str, str] = {}
        for raw_name, raw_value in self._raw_headers:
            name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        self.headers = headers
        if not self._headers_ready.done():
            self._headers_ready.set_result(None)

    def _on_body(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self._buffered += len(chunk)
        if self._buffered > HIGH_WATER and not self._paused:
            self._paused = True
            self._connection.pause_reading()
        self._wake()

    def _on_complete(self, keep_alive: bool) -> None:
        self._complete = True
        self._keep_alive = keep_alive
        self._wake()

    def _on_lost(self, exc: Exception | None) -> None:
        if self._complete:
            return
        close_delimited = "content-length" not in self.headers and "transfer-encoding" not in self.headers
        if self._headers_ready.done() and close_delimited and exc is None:
            self._on_complete(False)  # a body that ends with the connection
            return
        if not self._got_bytes and self._loop.time() - self._sent_at < STALE_WINDOW:
            # The server closed it while idle, as the request went out: it never read it.
            self._fail(_StaleConnection("the connection was closed before the response started"))
        elif not self._got_bytes:
            self._fail(RemoteProtocolError("the connection was closed before the response started"))
        else:
            self._fail(RemoteProtocolError("the connection was closed before the response was complete"))

    def _fail(self, error: HTTPError) -> None:
        if self._error is None and not self._complete:
            self._error = error
        if not self._headers_ready.done():
            self._headers_ready.set_exception(error)
            self._headers_ready.exception()  # retrieved: no "never retrieved" warning if nobody waits
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # ---------------------------------------------------------------- reader side

    async def _wait_headers(self) -> None:
        await self._wait_for(self._headers_ready, "response headers")

    async def _wait_for(self, future: asyncio.Future[None], what: str) -> None:
        timer = self._loop.call_later(self._read_timeout, _expire, future, what, self._read_timeout)
        try:
            await future
        finally:
            timer.cancel()

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        """The body as it arrives (no decoding: identity was asked for)."""
        while True:
            while not self._chunks:
                if self._error is not None:
                    raise self._error
                if self._complete:
                    self._release()
                    return
                self._waiter = self._loop.create_future()
                try:
                    await self._wait_for(self._waiter, "the next part of the response body")
                except ReadTimeout as timeout:
                    self._error = timeout
                    raise
                finally:
                    self._waiter = None
            chunk = self._chunks.popleft()
            self._buffered -= len(chunk)
            if self._paused and self._buffered < LOW_WATER:
                self._paused = False
                self._connection.resume_reading()
            yield chunk

    async def aread(self) -> bytes:
        return b"".join([chunk async for chunk in self.aiter_raw()])

    async def aclose(self) -> None:
        if self._complete and not self._chunks and self._error is None:
            self._release()
        elif not self._released:
            self._released = True
            self._connection.close()  # unfinished: closing is how the provider learns to stop

    def _release(self) -> None:
        if not self._released:
            self._released = True
            self._client._release(self._connection, reusable=self._keep_alive)


def _expire(future: asyncio.Future[None], what: str, seconds: float) -> None:
    if not future.done():
        future.set_exception(ReadTimeout(f"no {what} within {seconds:g} s"))


class _Connection(asyncio.Protocol):
    def __init__(self, origin: _Origin) -> None:
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self.response: Response | None = None
        self._parser: httptools.HttpResponseParser | None = None
        self._interim = False  # a 1xx answer is being parsed; the real one follows
        self._finished = False  # the response is complete: anything after it is not ours

    def start(self, response: Response, head: bytes, body: bytes) -> None:
        assert self.transport is not None
        self.response = response
        self._parser = httptools.HttpResponseParser(self)
        self._interim = False
        self._finished = False
        response._sent_at = response._loop.time()
        self.transport.write(head + body if len(body) < 65536 else head)
        if len(body) >= 65536:
            self.transport.write(body)  # large bodies: no copy

    def pause_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    # ---------------------------------------------------------------- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's

    def data_received(self, data: bytes) -> None:
        response = self.response
        if response is None or self._parser is None:
            self.close()  # nothing was asked on this connection: it cannot be trusted any more
            return
        response._got_bytes = True
        if self._finished:
            self._reject_extra()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            response._fail(RemoteProtocolError("the upstream switched protocols"))
            self.close()
        except httptools.HttpParserError as exc:
            response._fail(RemoteProtocolError(f"malformed HTTP response: {exc}"))
            self.close()

    def _reject_extra(self) -> None:
        # E.g. a 408 sent before an idle close: never part of this answer, never pooled.
        if self.response is not None:
            self.response._keep_alive = False
        self.close()

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost decides what the EOF meant

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.response is not None:
            self.response._on_lost(exc)

    # ---------------------------------------------------------------- httptools callbacks

    def on_message_begin(self) -> None:
        if self._finished:
            self._reject_extra()

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self.response is not None
        if not self._finished:
            self.response._on_header(name, value)

    def on_headers_complete(self) -> None:
        assert self.response is not None and self._parser is not None
        if self._finished:
            return
        status = self._parser.get_status_code()
        if 100 <= status < 200:
            self._interim = True
            self.response._raw_headers.clear()
            return
        self.response._on_headers_complete(status)

    def on_body(self, body: bytes) -> None:
        assert self.response is not None
        if not self._finished:
            self.response._on_body(body)

    def on_message_complete(self) -> None:
        assert self.response is not None and self._parser is not None
        if self._finished:
            return
        if self._interim:
            self._interim = False
            return
        self._finished = True
        self.response._on_complete(self._parser.should_keep_alive())


class _Tunnel(asyncio.Protocol):
    """The proxy's answer to CONNECT; after it, the connection carries TLS to the origin."""

    def __init__(self) -> None:
        self.answered: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._head = b""

    def data_received(self, data: bytes) -> None:
        self._head += data
        if len(self._head) > 65536 and not self.answered.done():
            self.answered.set_result(0)  # not an HTTP answer to CONNECT
        if b"\r\n\r\n" in self._head and not self.answered.done():
            status_line = self._head.split(b"\r\n", 1)[0].split()
            ok = len(status_line) >= 2 and status_line[0].startswith(b"HTTP/") and status_line[1].isdigit()
            self.answered.set_result(int(status_line[1]) if ok else 0)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.answered.done():
            self.answered.set_result(0)


class HTTPClient:
    def __init__(self, *, connect_timeout: float, read_timeout: float, max_idle_per_origin: int = 128,
                 keepalive_expiry: float = 30.0, ssl_context: ssl.SSLContext | None = None,
                 proxies: Mapping[str, str] | None = None) -> None:
        """`proxies`: {"http": url, "https": url, "no": "hosts,..."}; default: HTTP(S)_PROXY and
        NO_PROXY from the environment."""
        self.proxies = dict(urllib.request.getproxies_environment() if proxies is None else proxies)
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_idle_per_origin = max_idle_per_origin
        self.keepalive_expiry = keepalive_expiry
        self._ssl = ssl_context
        self._idle: dict[_Origin, list[_Connection]] = {}
        self._targets: dict[str, _Target] = {}
        self._closed = False

    async def send(self, request: Request, *, connect_timeout: float | None = None,
                   read_timeout: float | None = None) -> Response:
        """Send `request`; return once the response's headers are in (the body is not read yet)."""
        if self._closed:
            raise ConnectError("the HTTP client is closed")
        target = self._targets.get(request.url)
        if target is None:
            target = self._targets[request.url] = _target(request.url, self.proxies)
            if len(self._targets) > 1024:
                self._targets.pop(next(iter(self._targets)))
        head = _head(request, target)
        connect = self.connect_timeout if connect_timeout is None else connect_timeout
        read = self.read_timeout if read_timeout is None else read_timeout
        deadline = asyncio.get_running_loop().time() + read
        while True:
            connection, reused = await self._acquire(target, connect)
            response = Response(connection, self, max(deadline - asyncio.get_running_loop().time(), 0.001))
            try:
                connection.start(response, head, request.content)
                await response._wait_headers()
            except _StaleConnection:
                if reused:
                    continue  # the server had closed it while idle and read nothing: try a fresh one
                raise RemoteProtocolError("the upstream closed the connection without answering") from None
            except BaseException:
                connection.close()  # a timeout or a cancelled caller: the request is abandoned
                raise
            if reused and response.status_code == 408:
                connection.close()  # "idle too long": said as our request went out; it was not read
                continue
            return response

    async def aclose(self) -> None:
        self._closed = True
        for connections in self._idle.values():
            for connection in connections:
                connection.close()
        self._idle.clear()

    async def _acquire(self, target: _Target, timeout: float) -> tuple[_Connection, bool]:
        idle = self._idle.get(target.origin)
        now = time.monotonic()
        while idle:
            connection = idle.pop()  # the most recently used: the least likely to be stale
            transport = connection.transport
            if (connection.closed or transport is None or transport.is_closing()
                    or now - connection.idle_since > self.keepalive_expiry):
                connection.close()
                continue
            return connection, True
        return await self._connect(target, timeout), False

    async def _connect(self, target: _Target, timeout: float) -> _Connection:
        origin, proxy = target.origin, target.proxy
        where = f"{origin.host}:{origin.port}" + (f" through proxy {proxy.host}:{proxy.port}" if proxy else "")
        try:
            async with asyncio.timeout(timeout):
                if proxy is not None and origin.https:
                    return await self._tunnel(origin, proxy)
                host, port = (proxy.host, proxy.port) if proxy is not None else (origin.host, origin.port)
                tls = self._ssl_context() if origin.https else None
                _, connection = await asyncio.get_running_loop().create_connection(
                    lambda: _Connection(origin), host, port, ssl=tls, server_hostname=origin.host if tls else None,
                )
                return connection
        except TimeoutError:
            raise ConnectTimeout(f"connecting to {where} took over {timeout:g} s") from None
        except (OSError, ssl.SSLError) as exc:
            raise ConnectError(f"cannot connect to {where}: {exc}") from None

    async def _tunnel(self, origin: _Origin, proxy: _Proxy) -> _Connection:
        loop = asyncio.get_running_loop()
        transport, tunnel = await loop.create_connection(_Tunnel, proxy.host, proxy.port)
        authority = f"[{origin.host}]:{origin.port}" if ":" in origin.host else f"{origin.host}:{origin.port}"
        auth = f"proxy-authorization: {proxy.authorization}\r\n" if proxy.authorization else ""
        transport.write(f"CONNECT {authority} HTTP/1.1\r\nhost: {authority}\r\n{auth}\r\n".encode("latin-1"))
        try:
            status = await tunnel.answered
            if not 200 <= status < 300:
                raise ConnectError(f"proxy {proxy.host}:{proxy.port} refused the tunnel to {authority} "
                                   f"({f'HTTP {status}' if status else 'no HTTP answer'})")
            connection = _Connection(origin)
            tls_transport = await loop.start_tls(transport, connection, self._ssl_context(),
                                                 server_hostname=origin.host)
        except BaseException:
            transport.close()
            raise
        if tls_transport is None:
            transport.close()
            raise ConnectError(f"TLS through proxy {proxy.host}:{proxy.port} did not start")
        connection.connection_made(tls_transport)  # start_tls does not announce the new transport
        return connection

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context(cafile=certifi.where())
        return self._ssl

    def _release(self, connection: _Connection, *, reusable: bool) -> None:
        connection.response = None
        if not reusable or self._closed or connection.closed:
            connection.close()
            return
        idle = self._idle.setdefault(connection.origin, [])
        if len(idle) >= self.max_idle_per_origin:
            connection.close()
            return
        connection.idle_since = time.monotonic()
        idle.append(connection)
