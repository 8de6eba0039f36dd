"""Serving the fake app with uvicorn, and `FakeProvider`, the in-process handle."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import uvicorn

from memgate_testing.fake_provider._app import FakeProviderApp
from memgate_testing.fake_provider._replies import Responder
from memgate_testing.fake_provider._state import Behavior, FakeState


def bind_socket(host: str, port: int) -> socket.socket:
    """A bound TCP socket (port 0 picks a free port); uvicorn calls listen() on it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


class _Server(uvicorn.Server):
    """uvicorn, plus: on shutdown, let in-flight fake responses skip their delays."""

    def __init__(self, config: uvicorn.Config, app: FakeProviderApp) -> None:
        super().__init__(config)
        self.fake_app = app

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.fake_app.drain()
        await super().shutdown(sockets=sockets)


def make_server(app: FakeProviderApp, *, loop: str = "auto") -> uvicorn.Server:
    config = uvicorn.Config(
        app,
        loop=loop,
        http="h11",
        lifespan="off",
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=1,
        timeout_keep_alive=30,
    )
    return _Server(config, app)


def url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class FakeProvider:
    """The fake provider served from a background thread with its own event loop.

    >>> with FakeProvider() as fake:
    ...     client = openai.OpenAI(base_url=fake.base_url, api_key="sk-test")
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        fast: bool = False,
        expected_key: str | None = None,
        responder: Responder | None = None,
        behavior: Behavior | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.fast = fast
        self.expected_key = expected_key
        self.responder = responder
        self._state = FakeState(record=not fast, behavior=behavior)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        """The server root, e.g. http://127.0.0.1:PORT: the Anthropic SDK's base_url (the control
        API lives under /_fake)."""
        return f"http://{url_host(self.host)}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI base URL, e.g. http://127.0.0.1:PORT/v1."""
        return self.url + "/v1"

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Recorded chat and messages requests so far: [{"path", "headers", "body", "api_key"}]."""
        return self._state.requests()

    @property
    def stream_outcomes(self) -> list[str]:
        """One entry per finished stream: 'completed' or 'client_disconnected'."""
        return self._state.stream_outcomes()

    @property
    def behavior(self) -> Behavior:
        return self._state.behavior

    def reset(self) -> None:
        """Forget recorded requests and restore the starting behaviour."""
        self._state.reset()

    def set_behavior(self, **changes: Any) -> Behavior:
        """Merge behaviour fields (`Behavior`'s: delays, failures, reply, unterminated_end)."""
        return self._state.update_behavior(changes)

    def start(self, timeout: float = 5.0) -> FakeProvider:
        if self._thread is not None:
            raise RuntimeError("FakeProvider is already running")
        sock = bind_socket(self.host, self.port)
        self.port = sock.getsockname()[1]
        app = FakeProviderApp(self._state, fast=self.fast, expected_key=self.expected_key, responder=self.responder)
        self._server = make_server(app)
        self._thread = threading.Thread(target=self._run, args=(sock,), name=f"fake-provider:{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if self._error is not None or not self._thread.is_alive():
                self._thread = None
                raise RuntimeError("fake provider failed to start") from self._error
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"fake provider did not start within {timeout} s")
            time.sleep(0.002)
        return self

    def _run(self, sock: socket.socket) -> None:
        assert self._server is not None
        try:
            self._server.run(sockets=[sock])
        except BaseException as exc:  # surfaced by start()
            self._error = exc
        finally:
            sock.close()

    def stop(self, timeout: float = 5.0) -> None:
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(timeout)
        self._thread = None
        self._server = None

    def __enter__(self) -> FakeProvider:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
