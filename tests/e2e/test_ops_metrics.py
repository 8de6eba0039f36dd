"""The operator's metrics move with real traffic: chat requests by status, latency, tokens
(memory's share too), the observer's lag and backlog."""

from __future__ import annotations

import uuid

import httpx
import openai
from helpers import observations, wait_for
from prometheus_client.parser import text_string_to_metric_families

from memgate_testing.fake_provider import FakeProvider
from memgate_testing.gateway import GatewayProcess


def samples(gateway: GatewayProcess) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the gateway's /metrics, by name and labels."""
    page = httpx.get(f"{gateway.url}/metrics", timeout=10)
    page.raise_for_status()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(page.text) for s in family.samples}


def value(snapshot: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    """The sum of the samples named `name` whose labels include `labels` (0 when none)."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in snapshot.items() if n == name and wanted <= ls)


def _chat(gateway: GatewayProcess, thread: str, text: str, *, stream: bool = False) -> None:
    client = openai.OpenAI(base_url=gateway.base_url, api_key=gateway.api_key, max_retries=0)
    headers = {"x-thread-id": thread, "x-resource-id": "ops-user"}
    if stream:
        for _ in client.chat.completions.create(model="fake/gpt-test", stream=True, extra_headers=headers,
                                                messages=[{"role": "user", "content": text}]):
            pass
    else:
        client.chat.completions.create(model="fake/gpt-test", extra_headers=headers,
                                       messages=[{"role": "user", "content": text}])


def test_observer_lag_and_backlog(gateway: GatewayProcess, provider: FakeProvider) -> None:
    thread = f"ops-lag-{uuid.uuid4().hex[:6]}"
    before = samples(gateway)
    _chat(gateway, thread, "My favourite mountain is the Eiger.")
    wait_for(lambda: observations(gateway, thread), timeout=15)
    after = wait_for(lambda: (s := samples(gateway)) and value(s, "memgate_observer_lag_seconds_count")
                     > value(before, "memgate_observer_lag_seconds_count") and s, timeout=10)
    # Acked within the histogram's range, and counted in some bucket up to +Inf.
    assert value(after, "memgate_observer_lag_seconds_bucket", le="+Inf") == value(after,
                                                                                  "memgate_observer_lag_seconds_count")
    assert 0 <= value(after, "memgate_observer_lag_seconds_sum") - value(before, "memgate_observer_lag_seconds_sum") < 60
    for stage in ("outbox", "stream"):  # sampled since the observer started
        assert ("memgate_observer_backlog_exchanges", frozenset({("stage", stage)})) in after
        assert value(after, "memgate_observer_backlog_exchanges", stage=stage) >= 0


def test_chat_requests_latency_and_tokens_are_counted(gateway: GatewayProcess, provider: FakeProvider) -> None:
    """Counted where each request's usage row is recorded (chat/service.py, edge/usage.py)."""
    thread = f"ops-chat-{uuid.uuid4().hex[:6]}"
    before = samples(gateway)
    _chat(gateway, thread, "I keep bees on my roof in Lyon.")
    wait_for(lambda: observations(gateway, thread), timeout=15)
    _chat(gateway, thread, "Where do I keep my bees?", stream=True)  # with that memory injected

    after = wait_for(lambda: (s := samples(gateway)) and value(s, "memgate_tokens_total", source="chat")
                     > value(before, "memgate_tokens_total", source="chat") and s, timeout=10)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("memgate_chat_requests_total", provider="fake", status="200", memory="on") == 2
    assert grew("memgate_chat_request_seconds_count", provider="fake", stream="false") >= 1
    assert grew("memgate_chat_request_seconds_count", provider="fake", stream="true") >= 1
    assert grew("memgate_tokens_total", source="chat", provider="fake", direction="input") > 0
    assert grew("memgate_tokens_total", source="chat", provider="fake", direction="output") > 0
    # The injected block's tokens (memgate's count; the fake provider counts words, so no
    # comparison with its input tokens here).
    assert grew("memgate_tokens_total", source="chat", provider="fake", direction="memory") > 0
