"""`memgate up` with an LLM Observer (the fake provider): the thread's current task and the
observer's failures reach the dashboard; a malformed answer is never stored as memory."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable

import httpx
import openai
from helpers import observations, wait_for

from memgate_testing.fake_provider import FakeProvider
from memgate_testing.gateway import GatewayProcess

GOOD = "## 2024-05-01\n- [high] 09:15 User's name is Kim; works at Acme. {M1}\nCurrent task: Introducing themselves."
BAD = "Sure! The user is called Kim.\n- [urgent] not the format"


def _observer_requests(provider: FakeProvider) -> list[dict]:  # type: ignore[type-arg]
    return [r for r in provider.requests if r["body"]["messages"][0]["content"].startswith("You are the Observer")]


def _dashboard(gateway: GatewayProcess) -> httpx.Client:
    client = httpx.Client(base_url=gateway.url, follow_redirects=True)
    client.post("/dashboard/login", data={"api_key": gateway.api_key}).raise_for_status()
    return client


def test_llm_observer_task_failures_and_dashboard(make_gateway: Callable[..., GatewayProcess],
                                                  provider: FakeProvider) -> None:
    gateway = make_gateway(env={"MEMGATE_OBSERVER_MODEL": "fake/observer-model", "MEMGATE_OBSERVER_DEBOUNCE_MS": "100"})
    gateway.start()
    client = openai.OpenAI(base_url=gateway.base_url, api_key=gateway.api_key, max_retries=0)
    good, bad = f"obs-good-{uuid.uuid4().hex[:6]}", f"obs-bad-{uuid.uuid4().hex[:6]}"

    # The fixed reply answers the chat and plays the Observer.
    provider.set_behavior(reply=GOOD)
    client.chat.completions.create(model="fake/gpt-test", extra_headers={"x-thread-id": good, "x-resource-id": "kim"},
                                   messages=[{"role": "user", "content": "My name is Kim and I work at Acme."}])
    [found] = wait_for(lambda: observations(gateway, good), timeout=15)
    assert found["text"] == "User's name is Kim; works at Acme." and found["priority"] == "high"
    [request] = _observer_requests(provider)
    assert request["body"]["model"] == "observer-model"
    new = request["body"]["messages"][1]["content"].split("NEW MESSAGES:\n")[1].splitlines()
    assert json.loads(new[0])["text"] == "My name is Kim and I work at Acme."
    assert found["source_message_ids"] == [m["id"] for m in httpx.get(
        f"{gateway.base_url}/memory/threads/{good}/messages", headers=gateway.headers()).json()["data"]][:1]

    provider.set_behavior(reply=BAD)
    client.chat.completions.create(model="fake/gpt-test", extra_headers={"x-thread-id": bad, "x-resource-id": "kim"},
                                   messages=[{"role": "user", "content": "Please remember that I like tea."}])
    dashboard = _dashboard(gateway)
    page = wait_for(lambda: (lambda html: html if "Observer failures" in html else None)(
        dashboard.get(f"/dashboard/threads/{bad}").text), timeout=15)
    assert "malformed observer output (after one retry)" in page
    assert "Sure! The user is called Kim." in page  # the raw answer, for debugging
    assert observations(gateway, bad) == []
    assert len(_observer_requests(provider)) == 3  # the good one, then the bad one and its retry

    page = dashboard.get(f"/dashboard/threads/{good}").text
    assert "Introducing themselves." in page and "Observer failures" not in page
