"""Lifecycle of `memgate up`: restart keeps memory, one process per data dir, clean stop."""

from __future__ import annotations

from collections.abc import Callable

import openai
import psutil
from helpers import memory_text

from memgate_testing.fake_provider import FakeProvider
from memgate_testing.gateway import GatewayProcess

HEADERS = {"x-thread-id": "restart-thread", "x-resource-id": "user-restart"}


def _running(data_dir: str) -> list[str]:
    """Engine processes (postgres, nats-server) working on this data dir."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        line = " ".join(proc.info["cmdline"] or [])
        if data_dir in line and ("postgres" in line or "nats-server" in line):
            found.append(line)
    return found


def test_restart_keeps_the_thread(make_gateway: Callable[..., GatewayProcess], provider: FakeProvider) -> None:
    first = make_gateway().start()
    client = openai.OpenAI(base_url=first.base_url, api_key=first.api_key, max_retries=0)
    client.chat.completions.create(model="fake/gpt-test", extra_headers=HEADERS,
                                   messages=[{"role": "user", "content": "My name is Robin and I live in Oslo."}])
    assert _running(str(first.data_dir)), "embedded engines should run under the data dir"
    assert first.stop() == 0
    assert _running(str(first.data_dir)) == [], "Ctrl-C must stop every child process"

    second = make_gateway(first.data_dir, port=first.port).start()
    answer = client.chat.completions.create(model="fake/gpt-test", extra_headers=HEADERS,
                                            messages=[{"role": "user", "content": "What is my name?"}])
    assert answer.choices[0].message.content == "Your name is Robin."
    assert "I live in Oslo" in memory_text(provider.requests[-1])
    # (The key is the one the first start was given: the answer above needed it.)
    assert "API key:    from MEMGATE_BOOTSTRAP_KEY (tenant default)" in second.log()


def test_second_up_on_same_data_dir_fails_clearly(make_gateway: Callable[..., GatewayProcess]) -> None:
    running = make_gateway().start()
    result = running.memgate("up")
    assert result.returncode != 0
    assert "already running" in result.stderr
    # The first one is unharmed.
    client = openai.OpenAI(base_url=running.base_url, api_key=running.api_key, max_retries=0)
    assert client.chat.completions.create(model="fake/gpt-test",
                                          messages=[{"role": "user", "content": "still there?"}]).choices


def test_first_start_prints_a_key(make_gateway: Callable[..., GatewayProcess]) -> None:
    env = {"MEMGATE_BOOTSTRAP_KEY": ""}
    gateway = make_gateway(env=env).start()
    printed = [line for line in gateway.log().splitlines() if "API key:" in line]
    assert printed, gateway.log()
    key = printed[0].split("API key:")[1].split()[0]
    assert key.startswith("msk_")
    client = openai.OpenAI(base_url=gateway.base_url, api_key=key, max_retries=0)
    # Custom providers list no models of their own; refresh=true asks them.
    assert any(m.id.startswith("fake/") for m in client.models.list(extra_query={"refresh": "true"}).data)
