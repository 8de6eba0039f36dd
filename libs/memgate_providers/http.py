"""memgate's upstream HTTP client: aiohttp's, behind the small interface the providers use.

Why aiohttp: measured at the gateway level (`make bench`, one session, 2 cores), it served
97% of the memory-on saturation of the HTTP/1.1 client memgate wrote for itself (on one hot
thread; 85% over 16 threads), while httpx served 40-45% (memory off: aiohttp 58%, httpx
10%). A maintained client that costs this little is worth more than 560 lines of our own.

What this module adds to it: one `Request` shape for every provider; errors in memgate's
terms (`ConnectError` means nothing was sent, `InvalidHeader` is refused before sending);
the system's CA store (and SSL_CERT_FILE / SSL_CERT_DIR) plus certifi's; HTTP proxies from
HTTP_PROXY / HTTPS_PROXY / NO_PROXY, never for loopback hosts; a cap on connections per
origin and on a response's size; identity encoding, passed through untouched.

Retries: a request is sent again, once, on a fresh connection only when the server cannot
have run it: a pooled connection it had closed while idle (lost within STALE_WINDOW of
sending, before any response), or a 408 ("idle too long"). The provider client decides
about everything else.
"""

from __future__ import annotations

import ipaddress
import ssl
import time
import urllib.request
from collections.abc import AsyncIterator, Mapping
from types import SimpleNamespace
from typing import Any
from urllib.parse import unquote, urlsplit

import aiohttp
import certifi
import msgspec

__all__ = [
    "ConnectError", "ConnectTimeout", "HTTPClient", "HTTPError", "InvalidHeader", "ReadTimeout", "RemoteProtocolError",
    "Request", "Response", "ResponseTooLarge", "TimeoutException",
]

USER_AGENT = "memgate"
STALE_WINDOW = 1.0  # s: a pooled connection lost this soon after sending was closed while idle
MAX_RESPONSE_BYTES = 64 * 1024 * 1024  # no provider answer is near this; a runaway one stops here
CONNECTIONS_PER_ORIGIN = 512
_FRAMING = frozenset({"host", "content-length", "transfer-encoding", "connection", "proxy-authorization"})


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


class ResponseTooLarge(RemoteProtocolError):
    """The response body went past the client's size cap."""


class Request(msgspec.Struct, frozen=True):
    """What a provider module describes; the client sends it."""

    method: str
    url: str
    headers: dict[str, str]  # lower-case names
    content: bytes = b""


class _Proxy(msgspec.Struct, frozen=True):
    url: str  # http://host:port
    host: str
    port: int
    authorization: str | None  # Proxy-Authorization, from credentials in the proxy URL


class Response:
    """A response whose body is read as it arrives: `aiter_raw()`, or `aread()` for all of it.

    Always `aclose()` it: a fully read body gives the connection back to the pool; an
    unfinished one closes the connection, which tells the provider to stop.
    """

    def __init__(self, raw: aiohttp.ClientResponse, max_bytes: int) -> None:
        self._raw = raw
        self._max_bytes = max_bytes
        self._finished = False
        self.status_code = raw.status
        headers: dict[str, str] = {}
        for name, value in raw.headers.items():
            name = name.lower()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        self.headers = headers

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        """The body as it arrives (no decoding: identity was asked for)."""
        received = 0
        try:
            async for chunk in self._raw.content.iter_any():
                received += len(chunk)
                if received > self._max_bytes:
                    raise ResponseTooLarge(f"the response is larger than {self._max_bytes} bytes")
                yield chunk
        except (TimeoutError, aiohttp.SocketTimeoutError) as exc:
            raise ReadTimeout("no part of the response body within the read timeout") from exc
        except aiohttp.ClientError as exc:
            raise RemoteProtocolError(f"the response broke off ({type(exc).__name__}: {exc})") from exc
        self._finished = True

    async def aread(self) -> bytes:
        return b"".join([chunk async for chunk in self.aiter_raw()])

    async def aclose(self) -> None:
        if self._finished:
            self._raw.release()
        else:
            self._raw.close()  # unfinished: closing is how the provider learns to stop


class HTTPClient:
    def __init__(self, *, connect_timeout: float, read_timeout: float,
                 connections_per_origin: int = CONNECTIONS_PER_ORIGIN, keepalive_expiry: float = 30.0,
                 max_response_bytes: int = MAX_RESPONSE_BYTES, ssl_context: ssl.SSLContext | None = None,
                 proxies: Mapping[str, str] | None = None) -> None:
        """`proxies`: {"http": url, "https": url, "no": "hosts,..."}; default: HTTP(S)_PROXY and
        NO_PROXY from the environment."""
        self.proxies = dict(urllib.request.getproxies_environment() if proxies is None else proxies)
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.connections_per_origin = connections_per_origin
        self.keepalive_expiry = keepalive_expiry
        self.max_response_bytes = max_response_bytes
        self._ssl = ssl_context
        self._session: aiohttp.ClientSession | None = None
        self._proxies: dict[str, _Proxy | None] = {}  # by scheme://host
        self._closed = False

    async def send(self, request: Request, *, connect_timeout: float | None = None,
                   read_timeout: float | None = None) -> Response:
        """Send `request`; return once the response's headers are in (the body is not read yet)."""
        if self._closed:
            raise ConnectError("the HTTP client is closed")
        headers = _headers(request)
        proxy = self._proxy(request.url)
        if proxy and proxy.authorization and request.url.startswith("http:"):
            headers["proxy-authorization"] = proxy.authorization  # (forwarded, not tunnelled: it goes with the request)
        # `connect` bounds the wait for a free connection to the origin (all of them busy
        # streaming) and the connection's opening together: without it, the wait had none.
        connect = connect_timeout or self.connect_timeout
        timeout = aiohttp.ClientTimeout(total=None, connect=connect, sock_connect=connect,
                                        sock_read=read_timeout or self.read_timeout)
        for attempt in (1, 2):
            reuse = SimpleNamespace(reused=False)
            sent = time.monotonic()
            try:
                raw = await self._client().request(
                    request.method, request.url, headers=headers, data=request.content,
                    proxy=proxy.url if proxy else None,
                    proxy_headers={"Proxy-Authorization": proxy.authorization} if proxy and proxy.authorization else None,
                    timeout=timeout, allow_redirects=False, trace_request_ctx=reuse)
            except aiohttp.ServerDisconnectedError as exc:
                if attempt == 1 and reuse.reused and time.monotonic() - sent < STALE_WINDOW:
                    continue  # the server had closed it while idle and read nothing: a fresh one
                raise RemoteProtocolError("the upstream closed the connection without answering") from exc
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                raise _translated(exc, proxy) from exc
            if attempt == 1 and raw.status == 408:
                raw.close()  # "idle too long": the request was not read
                continue
            return Response(raw, self.max_response_bytes)
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        self._closed = True
        if self._session is not None:
            await self._session.close()

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:  # (in the running loop)
            tracing = aiohttp.TraceConfig()
            tracing.on_connection_reuseconn.append(_mark_reused)
            connector = aiohttp.TCPConnector(limit=0, limit_per_host=self.connections_per_origin,
                                             keepalive_timeout=self.keepalive_expiry, ssl=self._ssl_context())
            self._session = aiohttp.ClientSession(
                connector=connector, auto_decompress=False, skip_auto_headers=("Accept",),
                headers={"user-agent": USER_AGENT, "accept-encoding": "identity"}, trace_configs=[tracing])
        return self._session

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()  # the system's store, SSL_CERT_FILE / SSL_CERT_DIR
            self._ssl.load_verify_locations(cafile=certifi.where())  # and where the system has none
        return self._ssl

    def _proxy(self, url: str) -> _Proxy | None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConnectError(f"not an http(s) URL: {url!r}")
        key = f"{parts.scheme}://{parts.hostname}"
        if key not in self._proxies:
            if len(self._proxies) > 1024:
                self._proxies.clear()
            self._proxies[key] = proxy_for(parts.scheme, parts.hostname, self.proxies)
        return self._proxies[key]


def proxy_for(scheme: str, host: str, proxies: Mapping[str, str]) -> _Proxy | None:
    """The proxy a request to `host` goes through, if any."""
    url = proxies.get(scheme)
    bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]  # (public, not in typeshed)
    if not url or _is_loopback(host) or bypass(host, {"no": proxies.get("no", "")}):
        return None  # (like Go's net/http: local providers such as ollama never go through a proxy)
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme != "http" or not parts.hostname:
        raise ConnectError(f"unsupported proxy URL {parts.scheme}://{parts.hostname}: only http:// proxies are")
    authorization = None
    if parts.username is not None:
        authorization = aiohttp.encode_basic_auth(unquote(parts.username), unquote(parts.password or ""))
    port = parts.port or 80
    return _Proxy(f"http://{parts.hostname}:{port}", parts.hostname, port, authorization)


def _is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost.") or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _headers(request: Request) -> dict[str, str]:
    """The request's headers, checked: framing is the client's business, and a header that
    could split the request is refused before anything is sent."""
    headers = {}
    for name, value in request.headers.items():
        if name in _FRAMING:
            continue
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name or ":" in name:
            raise InvalidHeader(f"invalid header {name!r}: it would not be sent")
        try:
            name.encode("latin-1")
            value.encode("latin-1")
        except UnicodeEncodeError:
            raise InvalidHeader("a header holds characters HTTP/1.1 cannot carry: it would not be sent") from None
        headers[name] = value
    return headers


async def _mark_reused(session: aiohttp.ClientSession, context: Any, params: Any) -> None:
    if context.trace_request_ctx is not None:
        context.trace_request_ctx.reused = True


def _translated(exc: Exception, proxy: _Proxy | None) -> HTTPError:
    """aiohttp's error in memgate's terms."""
    if isinstance(exc, aiohttp.ClientHttpProxyError):
        where = f"{proxy.host}:{proxy.port}" if proxy else "the proxy"
        return ConnectError(f"proxy {where} refused the tunnel (HTTP {exc.status})")
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return ConnectTimeout("the connection did not open within the connect timeout")
    if isinstance(exc, (aiohttp.SocketTimeoutError, TimeoutError)):
        return ReadTimeout("no response headers within the read timeout")
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return ConnectError(f"TLS certificate refused: {exc.certificate_error}")
    if isinstance(exc, (aiohttp.ClientConnectorError, aiohttp.ClientProxyConnectionError)):
        return ConnectError(f"could not connect ({type(exc).__name__}: {exc})")
    if isinstance(exc, aiohttp.ClientError):
        return RemoteProtocolError(f"{type(exc).__name__}: {exc}")
    return InvalidHeader(f"the request cannot be sent: {exc}")  # (a ValueError: aiohttp refused it)
