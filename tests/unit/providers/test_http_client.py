"""memgate's upstream HTTP client against real sockets: scripted servers, TLS, proxies, the fake provider."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Self

import msgspec
import pytest
import trustme  # (pinned in requirements-test.txt: missing, these tests fail rather than skip)

from memgate_providers.http import (
    ConnectError,
    ConnectTimeout,
    HTTPClient,
    InvalidHeader,
    ReadTimeout,
    RemoteProtocolError,
    Request,
    proxy_for,
)
from memgate_testing.fake_provider import FakeProvider

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class LocalServer:
    """A TCP server on 127.0.0.1 for one `async with`; subclasses say what a connection gets."""

    server: asyncio.Server | None = None

    async def __aenter__(self) -> Self:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError


class ScriptedServer(LocalServer):
    """Every connection runs `handler`; counts connections and requests."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[bytes] = []
        self.closed_by_client = asyncio.Event()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/chat/completions"

    @classmethod
    def answering(cls, raw: bytes, *, hold: bool = False) -> ScriptedServer:
        """A server that reads one request and writes `raw`; with `hold`, it then waits for EOF."""

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.read_request(reader)
            writer.write(raw)
            await writer.drain()
            if hold:
                await reader.read()

        server = cls(handler)
        return server

    async def read_request(self, reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        body = await reader.readexactly(length)
        self.requests.append(head + body)
        return head + body


def post(url: str, body: bytes = b'{"x":1}', **headers: str) -> Request:
    return Request("POST", url, {"content-type": "application/json", **headers}, body)


@pytest.fixture
async def client() -> AsyncIterator[HTTPClient]:
    c = HTTPClient(connect_timeout=2, read_timeout=2)
    yield c
    await c.aclose()


async def test_keep_alive_reuses_one_connection(client: HTTPClient) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await server.read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{\"ok\":true}")
            await writer.drain()

    async with ScriptedServer(handler) as server:
        for _ in range(5):
            response = await client.send(post(server.url, authorization="Bearer k"))
            assert response.status_code == 200 and response.headers["content-type"] == "application/json"
            assert await response.aread() == b'{"ok":true}'
            await response.aclose()
    assert server.connections == 1 and len(server.requests) == 5
    first = server.requests[0].lower()  # (header names are case-insensitive)
    assert first.startswith(b"post /v1/chat/completions http/1.1\r\n")
    assert b"\r\nhost: 127.0.0.1:" in first and b"\r\nauthorization: bearer k\r\n" in first
    assert b"\r\ncontent-length: 7\r\n" in first and first.endswith(b'\r\n\r\n{"x":1}')
    assert b"\r\nuser-agent: memgate\r\n" in first and b"\r\naccept-encoding: identity\r\n" in first


async def test_chunked_body_streams_piece_by_piece(client: HTTPClient) -> None:
    gate = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        writer.write(b"6\r\ndata: \r\n")
        await writer.drain()
        await gate.wait()  # the client must see the first piece before the rest exists
        writer.write(b"5\r\nhello\r\n0\r\n\r\n")
        await writer.drain()

    async with ScriptedServer(handler) as server:
        response = await client.send(post(server.url))
        pieces = response.aiter_raw()
        assert await anext(pieces) == b"data: "
        gate.set()
        assert [piece async for piece in pieces] == [b"hello"]
        await response.aclose()


async def test_close_delimited_body_ends_with_the_connection(client: HTTPClient) -> None:
    async with ScriptedServer.answering(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nall of it") as server:
        response = await client.send(post(server.url))
        assert await response.aread() == b"all of it"
        await response.aclose()


async def test_interim_100_continue_is_skipped(client: HTTPClient) -> None:
    raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nx-a: 1\r\nx-a: 2\r\ncontent-length: 2\r\n\r\nok"
    async with ScriptedServer.answering(raw, hold=True) as server:
        response = await client.send(post(server.url))
        assert response.status_code == 201 and response.headers["x-a"] == "1, 2"
        assert await response.aread() == b"ok"
        await response.aclose()


async def test_truncated_body_is_an_error(client: HTTPClient) -> None:
    async with ScriptedServer.answering(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly this") as server:
        response = await client.send(post(server.url))
        with pytest.raises(RemoteProtocolError):
            await response.aread()
        await response.aclose()


async def test_a_stale_pooled_connection_is_replaced_once(client: HTTPClient) -> None:
    dropped = 0  # requests that began on a reused connection the server then closed unanswered

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal dropped
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        if await reader.read(1):  # the next request's first byte: then the server closes this keep-alive connection
            dropped += 1

    async with ScriptedServer(handler) as server:
        for _ in range(3):
            response = await client.send(post(server.url))
            assert await response.aread() == b"ok"
            await response.aclose()
    assert len(server.requests) == 3  # no request was lost or sent twice
    assert dropped == 2 and server.connections == 3  # the 2nd and 3rd went to the pooled one first, then again


async def test_bytes_after_the_answer_are_not_part_of_it(client: HTTPClient) -> None:
    # The answer, then at once an unsolicited 408 (as some servers send before an idle close).
    raw = (b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi"
           b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 3\r\nconnection: close\r\n\r\nbye")
    async with ScriptedServer.answering(raw, hold=True) as server:
        for _ in range(2):
            response = await client.send(post(server.url))
            assert response.status_code == 200 and response.headers["content-length"] == "2"
            assert await response.aread() == b"hi"
            await response.aclose()
    assert server.connections == 2  # the tainted connection was not pooled


async def test_a_408_on_a_reused_connection_is_sent_again_fresh(client: HTTPClient) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        await reader.readuntil(b"\r\n\r\n")  # the next request's head arrives: "too late, idle"
        writer.write(b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n")
        await writer.drain()

    async with ScriptedServer(handler) as server:
        for _ in range(2):
            response = await client.send(post(server.url))
            assert response.status_code == 200 and await response.aread() == b"ok"
            await response.aclose()
    assert server.connections == 2 and len(server.requests) == 2


async def test_a_reused_connection_lost_long_after_sending_is_not_resent(client: HTTPClient) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        await server.read_request(reader)  # this one the server read, worked on, then crashed
        await asyncio.sleep(1.3)

    async with ScriptedServer(handler) as server:
        response = await client.send(post(server.url))
        await response.aread()
        await response.aclose()
        with pytest.raises(RemoteProtocolError):
            await client.send(post(server.url))
    assert len(server.requests) == 2  # it may have run: it is not sent a second time


async def test_a_server_that_answers_nothing_is_a_protocol_error(client: HTTPClient) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)  # and close without a word

    async with ScriptedServer(handler) as server:
        with pytest.raises(RemoteProtocolError):
            await client.send(post(server.url))
    assert server.connections == 1  # a new connection is not retried: the server read the request


async def test_garbage_is_a_protocol_error(client: HTTPClient) -> None:
    async with ScriptedServer.answering(b"SSH-2.0-OpenSSH\r\n\r\n", hold=True) as server:
        with pytest.raises(RemoteProtocolError):
            await client.send(post(server.url))


async def test_read_timeouts_for_headers_and_for_body(client: HTTPClient) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await server.read_request(reader)
        if b"slow-body" in request:
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nhi\r\n")
            await writer.drain()
        await reader.read()  # never answers (more)

    async with ScriptedServer(handler) as server:
        with pytest.raises(ReadTimeout):
            await client.send(post(server.url), read_timeout=0.2)
        response = await client.send(post(server.url, b"slow-body"), read_timeout=0.2)
        with pytest.raises(ReadTimeout):
            await response.aread()
        await response.aclose()


async def test_waiting_for_a_free_connection_is_bounded_by_the_connect_timeout() -> None:
    """Every connection to the origin is busy (a stream): the next request waits for one no
    longer than the connect timeout, then fails as a connect timeout (was: for ever)."""
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nhi\r\n")
        await writer.drain()
        await reader.read()  # a stream that goes on

    one = HTTPClient(connect_timeout=0.3, read_timeout=5, connections_per_origin=1)
    try:
        async with ScriptedServer(handler) as server:
            busy = await one.send(post(server.url))
            started = asyncio.get_running_loop().time()
            with pytest.raises(ConnectTimeout):
                await asyncio.wait_for(one.send(post(server.url)), 5)
            assert asyncio.get_running_loop().time() - started < 2
            await busy.aclose()
    finally:
        await one.aclose()


async def test_connection_refused_is_a_connect_error(client: HTTPClient) -> None:
    async with ScriptedServer(lambda r, w: asyncio.sleep(0)) as server:
        url = server.url
    with pytest.raises(ConnectError):
        await client.send(post(url))


async def test_header_injection_is_refused_before_sending(client: HTTPClient) -> None:
    async with ScriptedServer(lambda r, w: asyncio.sleep(0)) as server:
        with pytest.raises(InvalidHeader, match="invalid header"):
            await client.send(post(server.url, authorization="Bearer k\r\nx-evil: 1"))
    assert server.connections == 0


async def test_closing_an_unfinished_response_closes_the_connection(client: HTTPClient) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nhi\r\n")
        await writer.drain()
        await reader.read()  # returns at EOF: the client hung up
        server.closed_by_client.set()

    async with ScriptedServer(handler) as server:
        response = await client.send(post(server.url))
        assert await anext(response.aiter_raw()) == b"hi"
        await response.aclose()
        await asyncio.wait_for(server.closed_by_client.wait(), 2)


async def test_large_bodies_both_ways_with_back_pressure(client: HTTPClient) -> None:
    size = 3 * 1024 * 1024

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await server.read_request(reader)
        body = request.split(b"\r\n\r\n", 1)[1]
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body))
        for i in range(0, len(body), 65536):
            writer.write(body[i:i + 65536])
            await writer.drain()

    payload = bytes(range(256)) * (size // 256)
    async with ScriptedServer(handler) as server:
        response = await client.send(post(server.url, payload))
        received = bytearray()
        async for piece in response.aiter_raw():
            received += piece
            await asyncio.sleep(0)  # a slow reader: the socket must be paused, not buffered whole
        await response.aclose()
    assert bytes(received) == payload


async def test_tls_with_verification() -> None:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_ctx)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nsecret")
        await writer.drain()
        await reader.read()

    server = await asyncio.start_server(handler, "localhost", 0, ssl=server_ctx)
    url = f"https://localhost:{server.sockets[0].getsockname()[1]}/v1/models"
    try:
        trusting = ssl.create_default_context()
        ca.configure_trust(trusting)
        good = HTTPClient(connect_timeout=2, read_timeout=2, ssl_context=trusting)
        response = await good.send(Request("GET", url, {}))
        assert await response.aread() == b"secret"
        await response.aclose()
        await good.aclose()
        stranger = HTTPClient(connect_timeout=2, read_timeout=2)  # public CAs only: must refuse
        with pytest.raises(ConnectError, match="certificate"):
            await stranger.send(Request("GET", url, {}))
        await stranger.aclose()
    finally:
        server.close()


async def test_against_the_fake_provider_json_and_stream(provider: FakeProvider, client: HTTPClient) -> None:
    body = msgspec.json.encode({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    url = provider.base_url + "/chat/completions"
    response = await client.send(post(url, body, authorization="Bearer test"))
    assert response.status_code == 200
    assert msgspec.json.decode(await response.aread())["object"] == "chat.completion"
    await response.aclose()
    stream = msgspec.json.encode({"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
    response = await client.send(post(url, stream, authorization="Bearer test"))
    text = b"".join([piece async for piece in response.aiter_raw()])
    await response.aclose()
    assert response.headers["content-type"].startswith("text/event-stream")
    assert text.rstrip().endswith(b"data: [DONE]")


# ------------------------------------------------------------------ proxies


class ForwardProxy(LocalServer):
    """A small real HTTP proxy: CONNECT tunnels, and plain requests forwarded as they come.

    Every host name resolves to 127.0.0.1 here, so tests can name origins that are not
    loopback (loopback origins never go through a proxy)."""

    def __init__(self, *, refuse: int | None = None) -> None:
        self.refuse = refuse
        self.heads: list[bytes] = []

    @property
    def url(self) -> str:
        return f"http://user:s%40cret@127.0.0.1:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        self.heads.append(head)
        method, target = head.split(b" ", 2)[:2]
        if self.refuse:
            writer.write(b"HTTP/1.1 %d No\r\ncontent-length: 0\r\n\r\n" % self.refuse)
            await writer.drain()
            writer.close()
            return
        if method == b"CONNECT":
            _, port = target.rsplit(b":", 1)
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", int(port))
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:  # absolute form: http://host:port/path
            _, port = target.split(b"/")[2].rsplit(b":", 1)
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", int(port))
            up_writer.write(head)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer), return_exceptions=True)


async def test_https_goes_through_a_connect_tunnel() -> None:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("provider.test").configure_cert(server_ctx)
    seen: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:  # keep-alive: every request on this connection
                seen.append(await reader.readuntil(b"\r\n\r\n"))
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\ntunnel!")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    origin = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=server_ctx)
    port = origin.sockets[0].getsockname()[1]
    trusting = ssl.create_default_context()
    ca.configure_trust(trusting)
    try:
        async with ForwardProxy() as proxy:
            client = HTTPClient(connect_timeout=2, read_timeout=2, ssl_context=trusting, proxies={"https": proxy.url})
            for _ in range(2):  # the tunnelled connection is pooled like any other
                response = await client.send(Request("GET", f"https://provider.test:{port}/v1/models", {}))
                assert await response.aread() == b"tunnel!"
                await response.aclose()
            await client.aclose()
        assert len(proxy.heads) == 1 and len(seen) == 2
        assert proxy.heads[0].startswith(f"CONNECT provider.test:{port} HTTP/1.1\r\n".encode())
        assert b"proxy-authorization: basic dxnlcjpzqgnyzxq=\r\n" in proxy.heads[0].lower()  # user:s@cret
        assert seen[0].startswith(b"GET /v1/models HTTP/1.1\r\n") and b"proxy-authorization" not in seen[0].lower()
    finally:
        origin.close()


async def test_plain_http_is_forwarded_in_absolute_form() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        await reader.read()

    async with ScriptedServer(handler) as server, ForwardProxy() as proxy:
        client = HTTPClient(connect_timeout=2, read_timeout=2, proxies={"http": proxy.url})
        url = server.url.replace("127.0.0.1", "provider.test")
        response = await client.send(post(url))
        assert await response.aread() == b"ok"
        await response.aclose()
        await client.aclose()
    head = server.requests[0]
    assert head.startswith(f"POST {url} HTTP/1.1\r\n".encode())
    assert b"\r\nproxy-authorization: basic " in head.lower()


def test_which_hosts_go_through_the_proxy() -> None:
    proxies = {"http": "http://proxy.corp:3128", "https": "http://proxy.corp:3128", "no": "internal.example,.svc"}
    through = proxy_for("https", "api.openai.com", proxies)
    assert through is not None and (through.url, through.authorization) == ("http://proxy.corp:3128", None)
    assert proxy_for("http", "vllm.svc", proxies) is None  # NO_PROXY suffix
    assert proxy_for("http", "internal.example", proxies) is None  # NO_PROXY host
    for local in ("127.0.0.1", "localhost", "::1"):
        assert proxy_for("http", local, proxies) is None  # loopback never goes through a proxy
    assert proxy_for("https", "api.openai.com", {**proxies, "no": "*"}) is None
    assert proxy_for("https", "api.openai.com", {}) is None


async def test_proxy_refusals_and_unsupported_proxies() -> None:
    async with ForwardProxy(refuse=407) as refusing:
        client = HTTPClient(connect_timeout=2, read_timeout=2, proxies={"https": refusing.url})
        with pytest.raises(ConnectError, match=r"refused the tunnel.*HTTP 407"):
            await client.send(Request("GET", "https://api.example.invalid/v1/models", {}))
        await client.aclose()
    with pytest.raises(ConnectError, match="only http:// proxies"):
        await HTTPClient(connect_timeout=1, read_timeout=1, proxies={"https": "socks5://127.0.0.1:1080"}).send(
            Request("GET", "https://api.example.invalid/", {}))
