"""`FakeProviderProcess`: the fake provider in a subprocess, driven through its control API."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from memgate_testing.fake_provider._server import url_host

_LIBS_DIR = Path(__file__).resolve().parents[2]


class FakeProviderProcess:
    """Runs `python -m memgate_testing.fake_provider` and talks to it over HTTP."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        fast: bool = False,
        expected_key: str | None = None,
        delay_ms: int = 0,
        chunk_delay_ms: int = 0,
        python: str = sys.executable,
    ) -> None:
        self.host = host
        self.port = port
        self.fast = fast
        self.expected_key = expected_key
        self.delay_ms = delay_ms
        self.chunk_delay_ms = chunk_delay_ms
        self.python = python
        self._proc: subprocess.Popen[bytes] | None = None
        self._client: httpx.Client | None = None
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def url(self) -> str:
        return f"http://{url_host(self.host)}:{self.port}"

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def command(self, port_file: str) -> list[str]:
        cmd = [self.python, "-m", "memgate_testing.fake_provider", "--host", self.host, "--port", str(self.port)]
        cmd += ["--port-file", port_file]
        if self.fast:
            cmd.append("--fast")
        if self.expected_key is not None:
            cmd += ["--api-key", self.expected_key]
        if self.delay_ms:
            cmd += ["--delay-ms", str(self.delay_ms)]
        if self.chunk_delay_ms:
            cmd += ["--chunk-delay-ms", str(self.chunk_delay_ms)]
        return cmd

    def start(self, timeout: float = 10.0) -> FakeProviderProcess:
        if self._proc is not None:
            raise RuntimeError("FakeProviderProcess is already running")
        self._tmpdir = tempfile.TemporaryDirectory(prefix="memgate-fake-")
        port_file = Path(self._tmpdir.name) / "port"
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_LIBS_DIR), env.get("PYTHONPATH")) if p)
        self._proc = subprocess.Popen(self.command(str(port_file)), env=env, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while not port_file.exists():
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._cleanup()
                raise RuntimeError(f"fake provider process exited with code {code} before listening")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"fake provider process did not listen within {timeout} s")
            time.sleep(0.005)
        self.port = int(port_file.read_text().strip())
        self._client = httpx.Client(base_url=self.url, timeout=10.0)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout)
        self._cleanup()

    def _cleanup(self) -> None:
        if self._client is not None:
            self._client.close()
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
        self._proc = self._client = self._tmpdir = None

    def _control(self) -> httpx.Client:
        if self._client is None:
            raise RuntimeError("FakeProviderProcess is not running")
        return self._client

    def requests(self) -> list[dict[str, Any]]:
        """Recorded chat requests so far: [{"path", "headers", "body", "api_key"}]."""
        response = self._control().get("/_fake/requests")
        response.raise_for_status()
        recorded: list[dict[str, Any]] = response.json()
        return recorded

    def reset(self) -> None:
        """Forget recorded requests and restore the starting behaviour."""
        self._control().post("/_fake/reset").raise_for_status()

    def set_behavior(self, **changes: Any) -> dict[str, Any]:
        """Merge behaviour fields; returns the behaviour now in force."""
        return self._behavior(self._control().post("/_fake/behavior", json=changes))

    def behavior(self) -> dict[str, Any]:
        return self._behavior(self._control().get("/_fake/behavior"))

    @staticmethod
    def _behavior(response: httpx.Response) -> dict[str, Any]:
        response.raise_for_status()
        behavior: dict[str, Any] = response.json()
        return behavior

    def __enter__(self) -> FakeProviderProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
