"""`memgate up` looks after its embedded engines: a killed nats-server is started again and
nothing answered meanwhile is lost; a killed `memgate up` leaves no engine behind."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import asyncpg
import httpx
import openai
import pytest
from helpers import observations, observer_idle, wait_for

from memgate_testing.gateway import GatewayProcess


def _nats_pid(gateway: GatewayProcess) -> int:
    return int((gateway.data_dir / "nats" / "nats-server.pid").read_text().split()[0])


def _nats_port(gateway: GatewayProcess) -> int:
    return int((gateway.data_dir / "nats" / "nats-server.conf").read_text().split('listen: "127.0.0.1:')[1].split('"')[0])


def _outbox_rows(gateway: GatewayProcess) -> int:
    async def count() -> int:
        db = await asyncpg.connect(gateway.runtime()["database_url"])
        try:
            return int(await db.fetchval("SELECT count(*) FROM outbox"))
        finally:
            await db.close()

    return asyncio.run(count())


def _alive(pid: int) -> bool:
    try:
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_killed_nats_server_is_restarted_and_nothing_is_lost(make_gateway: Callable[..., GatewayProcess]) -> None:
    gateway = make_gateway(env={"MEMGATE_OBSERVER_MODEL": "local"}).start()
    client = openai.OpenAI(base_url=gateway.base_url, api_key=gateway.api_key, max_retries=0)
    memory = {"x-thread-id": "through-outage", "x-resource-id": "nats-fault"}

    def say(text: str) -> None:
        client.chat.completions.create(model="fake/m", extra_headers=memory,
                                       messages=[{"role": "user", "content": text}])

    say("My sister is called Ines.")
    first = _nats_pid(gateway)
    with socket.socket() as taken:  # (its port held: NATS stays down until this answer is in)
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: _bound(taken, _nats_port(gateway)), timeout=5)
        taken.listen()
        say("My brother is called Tomas.")  # answered while NATS is gone: waits in the outbox
        assert _outbox_rows(gateway) >= 1
    wait_for(lambda: _nats_pid(gateway) != first and _alive(_nats_pid(gateway)), timeout=30)
    say("My cousin is called Rui.")
    observer_idle(gateway, timeout=60)
    texts = " ".join(o["text"] for o in observations(gateway, "through-outage"))
    assert all(name in texts for name in ("Ines", "Tomas", "Rui")), texts
    metrics = httpx.get(f"{gateway.url}/metrics").text
    assert 'memgate_engine_restarts_total{engine="nats"} 1.0' in metrics
    assert "the embedded nats-server stopped; restarting it" in gateway.log()


def test_a_killed_memgate_up_leaves_no_engine_behind(make_gateway: Callable[..., GatewayProcess]) -> None:
    gateway = make_gateway().start()
    nats_pid = _nats_pid(gateway)
    postmaster = int((gateway.data_dir / "postgres" / "postmaster.pid").read_text().split()[0])
    assert gateway.proc is not None and _alive(postmaster)
    gateway.proc.kill()  # SIGKILL: no clean-up code runs
    gateway.proc.wait()
    gateway.proc = None
    wait_for(lambda: not _alive(nats_pid), timeout=10)
    wait_for(lambda: not _alive(postmaster), timeout=20)  # its watchdog stopped it
    gateway.start()  # and the next start on the same data dir works
    assert httpx.get(f"{gateway.url}/readyz").status_code == 200


def test_a_nats_server_that_fails_to_restart_is_tried_again(make_gateway: Callable[..., GatewayProcess]) -> None:
    """The restarted nats-server cannot listen (its port taken meanwhile): memgate up goes on
    answering and tries again until it can (a failed restart ended the whole process)."""
    gateway = make_gateway().start()
    port = _nats_port(gateway)
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        os.kill(_nats_pid(gateway), signal.SIGKILL)
        wait_for(lambda: _bound(taken, port), timeout=5)
        taken.listen()
        wait_for(lambda: "restarting an embedded engine failed" in gateway.log(), timeout=30)
        answer = httpx.post(f"{gateway.base_url}/chat/completions", headers=gateway.headers(), timeout=30,
                            json={"model": "fake/m", "messages": [{"role": "user", "content": "still there?"}]})
        assert answer.status_code == 200 and gateway.proc is not None and gateway.proc.poll() is None
    wait_for(lambda: 'memgate_engine_restarts_total{engine="nats"} 1.0' in httpx.get(f"{gateway.url}/metrics").text,
             timeout=30)


def _bound(sock: socket.socket, port: int) -> bool:
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        return False
    return True


def _engines_of(data_dir: Path) -> list[int]:
    """Live processes whose command line names this data dir (its postgres, nats-server)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if str(data_dir) in cmdline and "pytest" not in cmdline and _alive(int(entry.name)):
                found.append(int(entry.name))
    return found


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_the_start_stops_what_had_started(make_gateway: Callable[..., GatewayProcess],
                                                          sig: signal.Signals) -> None:
    """A SIGTERM while Postgres was starting ended the process there and left Postgres running;
    a Ctrl-C printed a traceback. Either now stops the start, and what had started with it."""
    gateway = make_gateway()
    gateway.data_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(gateway.log_path, "wb") as log:
        proc = subprocess.Popen([str(Path(sys.executable).parent / "memgate"), "up"], env=gateway.env,
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        wait_for(lambda: (gateway.data_dir / "postgres").exists(), timeout=30)  # the database is starting
        proc.send_signal(sig)
        code = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = gateway.log()
    assert "memgate is up" not in output, "the signal came too late to test the start"
    assert code == 0 and "Traceback" not in output, output
    wait_for(lambda: not _engines_of(gateway.data_dir), timeout=20)


def test_a_second_signal_stops_at_once_and_leaves_no_engine(make_gateway: Callable[..., GatewayProcess]) -> None:
    gateway = make_gateway().start()
    assert gateway.proc is not None
    gateway.proc.send_signal(signal.SIGINT)  # stopping, in order ...
    wait_for(lambda: "memgate: stopping..." in gateway.log(), timeout=10)
    gateway.proc.send_signal(signal.SIGINT)  # ... no: now
    code = gateway.proc.wait(10)
    gateway.proc = None
    assert code == 1 and "stopping at once" in gateway.log()
    wait_for(lambda: not _engines_of(gateway.data_dir), timeout=20)  # (they watch memgate, and stop with it)
