"""The Kubernetes shape: `memgate migrate`, then edge, observer and context as separate processes.

They share Postgres and NATS. A real Qdrant server is out of reach here (no Docker), and
Qdrant Edge is owned by one process, so each service gets its own data dir and the
cross-thread (vector) part is not exercised: the rest of the chat path is.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from helpers import memory_text, wait_for

from memgate_testing.fake_provider import FakeProvider
from memgate_testing.gateway import free_port

MEMGATE = str(Path(sys.executable).parent / "memgate")


@pytest.fixture()
def split(tmp_path: Path, postgres_url: str, nats_server, fake_provider: FakeProvider) -> Iterator[dict]:  # type: ignore[no-untyped-def]
    base = {
        **os.environ,
        "MEMGATE_DATABASE_URL": postgres_url,
        "MEMGATE_NATS_URL": nats_server.url,
        "MEMGATE_PROVIDER_FAKE_BASE_URL": fake_provider.base_url,
        "MEMGATE_PROVIDER_FAKE_API_KEY": "fake-provider-key",
        "MEMGATE_OBSERVER_MODEL": "local",
    }
    migrated = subprocess.run([MEMGATE, "migrate"], env=base, capture_output=True, text=True, timeout=60)
    assert migrated.returncode == 0, migrated.stderr
    key = subprocess.run([MEMGATE, "keys", "create", "--tenant", "split", "--quiet"], env=base,
                         capture_output=True, text=True, timeout=60).stdout.strip()
    ports = {"edge": free_port(), "observer": free_port(), "context": free_port()}
    procs = {}
    for name, port in ports.items():
        env = {**base, "MEMGATE_DATA_DIR": str(tmp_path / name),
               ("MEMGATE_HTTP_PORT" if name == "edge" else "MEMGATE_HEALTH_PORT"): str(port)}
        log = open(tmp_path / f"{name}.log", "wb")
        procs[name] = subprocess.Popen([MEMGATE, name], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        for name, port in ports.items():
            def ready(port: int = port, name: str = name) -> bool:
                assert procs[name].poll() is None, (tmp_path / f"{name}.log").read_text()
                try:
                    return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200
                except httpx.HTTPError:
                    return False
            wait_for(ready, timeout=60, interval=0.1)
        yield {"key": key, "ports": ports, "procs": procs, "migrate": migrated.stdout}
    finally:
        for proc in procs.values():
            proc.send_signal(signal.SIGTERM)
        for name, proc in procs.items():
            assert proc.wait(20) == 0, (tmp_path / f"{name}.log").read_text()


def test_split_services_serve_the_quickstart(split: dict, provider: FakeProvider) -> None:
    assert "applied: 0001_init.sql" in split["migrate"]
    base_url = f"http://127.0.0.1:{split['ports']['edge']}/v1"
    client = openai.OpenAI(base_url=base_url, api_key=split["key"], max_retries=0)
    headers = {"x-thread-id": f"split-{uuid.uuid4().hex[:6]}", "x-resource-id": "user-split"}
    client.chat.completions.create(model="fake/gpt-test", extra_headers=headers,
                                   messages=[{"role": "user", "content": "My name is Noor and I like tea."}])
    answer = client.chat.completions.with_raw_response.create(
        model="fake/gpt-test", extra_headers=headers, messages=[{"role": "user", "content": "What is my name?"}])
    assert answer.parse().choices[0].message.content == "Your name is Noor."
    assert answer.headers["x-memory"] == "injected"  # the context service answered over NATS
    assert "I like tea" in memory_text(provider.requests[-1])

    # The observer process consumed the events and wrote observations.
    def observed() -> list:
        r = httpx.get(f"{base_url}/memory/threads/{headers['x-thread-id']}/observations",
                      headers={"Authorization": f"Bearer {split['key']}"})
        return r.json()["data"]
    found = wait_for(observed, timeout=15)
    assert any("Noor" in o["text"] for o in found)

    for name in ("observer", "context"):
        metrics = httpx.get(f"http://127.0.0.1:{split['ports'][name]}/metrics").text
        assert "memgate_" in metrics


def test_context_down_degrades_but_chat_works(split: dict, provider: FakeProvider) -> None:
    split["procs"]["context"].send_signal(signal.SIGTERM)
    assert split["procs"]["context"].wait(20) == 0
    base_url = f"http://127.0.0.1:{split['ports']['edge']}/v1"
    client = openai.OpenAI(base_url=base_url, api_key=split["key"], max_retries=0)
    started = time.perf_counter()
    raw = client.chat.completions.with_raw_response.create(
        model="fake/gpt-test", extra_headers={"x-thread-id": "degraded", "x-resource-id": "user-split"},
        messages=[{"role": "user", "content": "Hello there, how are you?"}])
    assert raw.parse().choices[0].message.content
    assert raw.headers["x-memory"] == "degraded"
    assert raw.headers["x-memory-degraded"] == "true"
    assert raw.headers["x-memory-degraded-reason"] in ("context_unavailable", "context_timeout")
    assert time.perf_counter() - started < 10  # no wait on the dead service beyond its budget
