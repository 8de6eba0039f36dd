"""`memgate up` as a real subprocess, for end-to-end tests and benchmarks."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

DEFAULT_KEY = "msk_test_bootstrap_key_for_memgate_tests"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Reachable:
    """Where a gateway's HTTP API is, and how to authenticate to it."""

    port: int
    api_key: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def headers(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.api_key}"}


class GatewayProcess(_Reachable):
    """Starts `memgate up` on a data dir and waits until /readyz says ready."""

    def __init__(self, data_dir: Path, *, provider_url: str | None = None, env: dict[str, str] | None = None,
                 api_key: str = DEFAULT_KEY, port: int | None = None, traces: bool = True) -> None:
        self.data_dir = data_dir
        self.api_key = api_key
        self.port = port or free_port()
        self.log_path = data_dir.parent / f"{data_dir.name}-memgate.log"
        self.traces_path = data_dir.parent / f"{data_dir.name}-traces.jsonl"
        self.env = {
            **os.environ,
            "MEMGATE_DATA_DIR": str(data_dir),
            "MEMGATE_HTTP_PORT": str(self.port),
            "MEMGATE_BOOTSTRAP_KEY": api_key,
            **({"MEMGATE_TRACES_FILE": str(self.traces_path)} if traces else {}),
            **({"MEMGATE_PROVIDER_FAKE_BASE_URL": provider_url, "MEMGATE_PROVIDER_FAKE_API_KEY": "fake-provider-key"}
               if provider_url else {}),
            **(env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 90.0) -> GatewayProcess:
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        started_at = log.tell()  # the log is appended to across restarts: look at this run's part
        self.proc = subprocess.Popen([_memgate(), "up"], env=self.env,
                                     stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"memgate up exited with {self.proc.returncode}:\n{self.log()}")
            try:
                # Ready, and done starting: the banner (with a first key) is printed last.
                if (httpx.get(self.url + "/readyz", timeout=1).status_code == 200
                        and b"memgate is up" in self.log_path.read_bytes()[started_at:]):
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"memgate up not ready within {timeout}s:\n{self.log()}")

    def stop(self, timeout: float = 30.0) -> int:
        """Ctrl-C, as a user would; returns the exit code."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise RuntimeError(f"memgate up did not stop within {timeout}s:\n{self.log()}") from None
        code = self.proc.returncode
        self.proc = None
        return code

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def runtime(self) -> dict[str, Any]:
        info: dict[str, Any] = json.loads((self.data_dir / "runtime.json").read_text())
        return info

    def memgate(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run another `memgate` command with this gateway's configuration."""
        return subprocess.run([_memgate(), *args], env=self.env,
                              capture_output=True, text=True, timeout=timeout)

    def __enter__(self) -> GatewayProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class SplitServices(_Reachable):
    """The Kubernetes shape as subprocesses: `memgate migrate`, then `memgate edge`, `observer`
    and `context` on one Postgres, one NATS and one Qdrant server. Offers what tests use of a
    `GatewayProcess` (URLs, the key, `headers`, `runtime`, `memgate`), so one test can run
    against either shape."""

    SERVICES = ("edge", "observer", "context")

    def __init__(self, root: Path, *, database_url: str, nats_url: str, qdrant_url: str,
                 provider_url: str | None = None, api_key: str = DEFAULT_KEY, env: dict[str, str] | None = None) -> None:
        self.root = root
        self.data_dir = root / "edge"
        self.api_key = api_key
        self.database_url = database_url
        self.nats_url = nats_url
        self.ports = {name: free_port() for name in self.SERVICES}
        self.port = self.ports["edge"]
        self.env = {
            **os.environ,
            "MEMGATE_DATABASE_URL": database_url, "MEMGATE_NATS_URL": nats_url, "MEMGATE_QDRANT_URL": qdrant_url,
            "MEMGATE_BOOTSTRAP_KEY": api_key,
            **({"MEMGATE_PROVIDER_FAKE_BASE_URL": provider_url, "MEMGATE_PROVIDER_FAKE_API_KEY": "fake-provider-key"}
               if provider_url else {}),
            **(env or {}),
        }
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, timeout: float = 90.0) -> SplitServices:
        self.root.mkdir(parents=True, exist_ok=True)
        migrated = self.memgate("migrate")
        if migrated.returncode != 0:
            raise RuntimeError(f"memgate migrate failed:\n{migrated.stderr}")
        for name in self.SERVICES:
            env = {**self.env, "MEMGATE_DATA_DIR": str(self.root / name),
                   ("MEMGATE_HTTP_PORT" if name == "edge" else "MEMGATE_HEALTH_PORT"): str(self.ports[name])}
            with open(self.root / f"{name}.log", "ab") as log:
                self.procs[name] = subprocess.Popen([_memgate(), name], env=env, stdout=log, stderr=subprocess.STDOUT,
                                                    stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        for name, port in self.ports.items():
            while True:
                if self.procs[name].poll() is not None:
                    raise RuntimeError(f"memgate {name} exited:\n{self.log(name)}")
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"memgate {name} not ready within {timeout}s:\n{self.log(name)}")
                time.sleep(0.1)
        return self

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, as Kubernetes does; the highest exit code."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes = []
        for proc in self.procs.values():
            try:
                codes.append(proc.wait(timeout))
            except subprocess.TimeoutExpired:
                proc.kill()
                codes.append(proc.wait())
        self.procs = {}
        return max(codes, default=0)

    def log(self, name: str = "edge") -> str:
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def runtime(self) -> dict[str, Any]:
        return {"http": self.url, "database_url": self.database_url, "nats_url": self.nats_url}

    def memgate(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([_memgate(), *args], env=self.env, capture_output=True, text=True, timeout=timeout)


def _memgate() -> str:
    return str(Path(sys.executable).parent / "memgate")
