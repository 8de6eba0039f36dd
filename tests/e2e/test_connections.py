"""How `memgate up` treats a client's connections: an idle kept-alive connection stays open
longer than a proxy's or a client pool's idle timeout, so the client side closes it first."""

from __future__ import annotations

import http.client
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from memgate_testing.gateway import GatewayProcess

IDLE_SECONDS = 6  # past uvicorn's own default (5 s), which raced clients that keep 5 s or more


def test_an_idle_connection_is_served_again(gateway: GatewayProcess) -> None:
    url = urlsplit(gateway.url)
    connection = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=30)
    try:
        connection.request("GET", "/healthz")
        first = connection.getresponse()
        first.read()
        assert first.status == 200 and not first.will_close
        socket_before = connection.sock
        time.sleep(IDLE_SECONDS)
        connection.request("GET", "/healthz")  # on the same socket: raises if memgate closed it
        second = connection.getresponse()
        second.read()
        assert second.status == 200 and connection.sock is socket_before
    finally:
        connection.close()


def test_a_port_in_use_is_said_plainly(tmp_path: Path) -> None:
    """Another server on the port: memgate up says so and exits 1, no traceback, nothing left
    running (the bind error was a sys.exit inside uvicorn's task: a traceback, exit 3)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        gateway = GatewayProcess(tmp_path / "data", port=taken.getsockname()[1])
        with pytest.raises(RuntimeError) as failed:
            gateway.start()
    said = str(failed.value)
    assert "exited with 1" in said and "cannot listen on 127.0.0.1" in said and "MEMGATE_HTTP_PORT" in said, said
    assert "Traceback" not in said
