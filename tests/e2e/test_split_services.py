"""The Kubernetes shape: `memgate migrate`, then edge, observer and context as separate processes.

They share Postgres, NATS and a Qdrant server (a real one: MEMGATE_TEST_QDRANT_URL, or a
container where Docker runs; skipped with the reason elsewhere). Without a shared vector
index the split services refuse to start: that is checked here whatever the machine.
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
from memgate_testing.gateway import SplitServices

MEMGATE = str(Path(sys.executable).parent / "memgate")


@pytest.fixture()
def split(tmp_path: Path, postgres_url: str, nats_server, fake_provider: FakeProvider,  # type: ignore[no-untyped-def]
          qdrant_server_url: str) -> Iterator[dict]:
    services = SplitServices(tmp_path, database_url=postgres_url, nats_url=nats_server.url,
                             qdrant_url=qdrant_server_url, provider_url=fake_provider.base_url)
    services.start()
    try:
        yield {"key": services.api_key, "ports": services.ports, "procs": services.procs, "services": services}
    finally:
        for name, proc in services.procs.items():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                assert proc.wait(20) == 0, services.log(name)


@pytest.mark.parametrize("service", ["edge", "observer", "context"])
def test_split_services_refuse_to_start_without_a_shared_vector_index(service: str, tmp_path: Path) -> None:
    env = {**os.environ, "MEMGATE_DATA_DIR": str(tmp_path), "MEMGATE_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/x",
           "MEMGATE_NATS_URL": "nats://127.0.0.1:1"}
    env.pop("MEMGATE_QDRANT_URL", None)
    result = subprocess.run([MEMGATE, service], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert f"memgate {service}: the split services share one vector index: set MEMGATE_QDRANT_URL" in result.stderr
    assert "Traceback" not in result.stderr


def test_split_services_serve_the_quickstart(split: dict, provider: FakeProvider) -> None:
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
