"""The Logs and Usage pages in headless Chromium: each request a row; a row opens the memory
block it was given and why each item was chosen; usage per day as charts, tables and CSV,
with cost against a hand computation; nothing of it visible to another tenant."""

from __future__ import annotations

import csv
import io
import shutil
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from helpers import memory_text, observations, unavailable, wait_for

from memgate_testing.fake_provider import FakeProvider
from memgate_testing.gateway import GatewayProcess

from .conftest import sign_in

CHROMIUM = shutil.which("chromium")
pytestmark = unavailable(None if CHROMIUM else "Debian's chromium is not installed (make test installs it)", ours=True)

# `openai/...` goes to the fake provider, priced at gpt-4o-mini's rates (as in test_usage_cost).
IN_PRICE, OUT_PRICE = 0.15 / 1e6, 0.60 / 1e6


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, fake_provider: FakeProvider) -> Iterator[GatewayProcess]:
    process = GatewayProcess(tmp_path_factory.mktemp("logs") / "data", provider_url=fake_provider.base_url,
                             env={"MEMGATE_PROVIDER_OPENAI_BASE_URL": fake_provider.base_url,
                                  "MEMGATE_PROVIDER_OPENAI_API_KEY": "sk-fake"})
    process.start()
    yield process
    process.stop()


class Traffic:
    """What the module's requests were, to find them on the pages."""

    def __init__(self) -> None:
        self.first_thread = f"lisbon-{uuid.uuid4().hex[:6]}"
        self.second_thread = f"travel-{uuid.uuid4().hex[:6]}"
        self.resource = f"kim-{uuid.uuid4().hex[:6]}"
        self.recalled_request = ""
        self.usages: list[dict[str, int]] = []


@pytest.fixture(scope="module")
def traffic(gw: GatewayProcess, fake_provider: FakeProvider) -> Traffic:
    t = Traffic()
    client = openai.OpenAI(base_url=gw.base_url, api_key=gw.api_key, max_retries=0)
    fake_provider.reset()
    first = client.chat.completions.with_raw_response.create(
        model="openai/gpt-4o-mini", extra_headers={"x-thread-id": t.first_thread, "x-resource-id": t.resource},
        messages=[{"role": "user", "content": "I moved to Lisbon last spring and I adore the tram 28 rides."}])
    t.usages.append(first.parse().usage.model_dump())
    wait_for(lambda: observations(gw, t.first_thread), timeout=20)
    # Another thread of the same resource: its own recent messages, and recall brings the first thread's memory.
    opening = client.chat.completions.create(
        model="openai/gpt-4o-mini", extra_headers={"x-thread-id": t.second_thread, "x-resource-id": t.resource},
        messages=[{"role": "user", "content": "I am planning a weekend trip with my sister."}])
    t.usages.append(opening.usage.model_dump())
    second = client.chat.completions.with_raw_response.create(
        model="openai/gpt-4o-mini", extra_headers={"x-thread-id": t.second_thread, "x-resource-id": t.resource},
        messages=[{"role": "user", "content": "Which tram rides in Lisbon did I say I adore?"}])
    t.usages.append(second.parse().usage.model_dump())
    t.recalled_request = second.headers["x-request-id"]
    assert "tram 28" in memory_text(fake_provider.requests[-1])  # (memory reached the model)
    stream = client.chat.completions.create(model="fake/gpt-test", stream=True, messages=[{"role": "user", "content": "hi"}])
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    fake_provider.set_behavior(fail_status=429, fail_times=1)
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="fake/gpt-test", messages=[{"role": "user", "content": "hello?"}])
    fake_provider.reset()
    with pytest.raises(openai.NotFoundError):  # refused before any provider is asked: a row all the same
        client.chat.completions.create(model="fake/gpt-test", messages=[{"role": "user", "content": "hi"}],
                                       extra_headers={"x-thread-id": t.first_thread, "x-resource-id": "elsewhere"})
    wait_for(lambda: sum(int(r["requests"]) for r in rows(gw, gw.api_key)) >= 6, timeout=15)  # (usage is written in batches)
    return t


def rows(gw: GatewayProcess, key: str, range_name: str = "today") -> list[dict[str, str]]:
    """The CSV export, read as a signed-in browser would (a session cookie)."""
    with httpx.Client(base_url=gw.url, timeout=30) as http:
        assert http.post("/dashboard/login", data={"api_key": key}).status_code == 303
        answer = http.get("/dashboard/usage/export.csv", params={"range": range_name})
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv"), answer.text
    return list(csv.DictReader(io.StringIO(answer.text)))


def test_every_request_is_a_row_and_opens_its_memory(gw: GatewayProcess, traffic: Traffic, browser: Any,
                                                     shot: Any) -> None:
    page = sign_in(browser, gw, gw.api_key)
    page.click("nav >> text=Logs")
    page.wait_for_url("**/dashboard/logs")
    log = page.locator("[data-testid=log-row]")
    assert log.count() == 6
    statuses = page.locator("[data-testid=log-status]").all_inner_texts()
    assert [s.split()[0] for s in statuses] == ["404", "429", "200", "200", "200", "200"]  # newest first
    assert "stream" in statuses[2]
    shot(page, "logs")

    page.select_option("select[name=status]", "429")
    page.click("input[value=Filter]")
    assert page.locator("[data-testid=log-row]").count() == 1 and "429" in page.inner_text("[data-testid=log-row]")
    page.select_option("select[name=status]", "error")
    page.click("input[value=Filter]")
    assert page.locator("[data-testid=log-row]").count() == 2
    page.goto(f"{gw.url}/dashboard/logs?thread={traffic.second_thread}")
    assert page.locator("[data-testid=log-row]").count() == 2
    page.goto(f"{gw.url}/dashboard/logs?since=not-a-date")
    assert "must be a date" in page.inner_text("[role=alert]")

    # The row opens the request: the block it was given, and why each item is in it.
    page.goto(f"{gw.url}/dashboard/logs?thread={traffic.second_thread}")
    page.locator("[data-testid=log-row] a").first.click()
    page.wait_for_url(f"**/dashboard/logs/{traffic.recalled_request}")
    assert "Lisbon" in page.inner_text("[data-testid=memory-block]")
    assert "2 messages" in page.inner_text("[data-testid=memory-own]")  # (the thread's own opening exchange)
    recalled = page.locator("[data-testid=memory-item]", has_text="Lisbon")
    assert recalled.count() >= 1
    why = recalled.first.inner_text()
    assert "recalled message" in why and traffic.first_thread in why and "another thread" in why
    assert page.locator("[data-testid=trace-id]").inner_text().strip().isalnum()  # (the gateway traces to a file)
    cost = traffic.usages[2]["prompt_tokens"] * IN_PRICE + traffic.usages[2]["completion_tokens"] * OUT_PRICE
    assert page.inner_text("[data-testid=entry-cost]").startswith(f"${cost:.6f}")
    shot(page, "log-entry")


def test_usage_per_day_as_charts_tables_and_csv(gw: GatewayProcess, traffic: Traffic, browser: Any, shot: Any) -> None:
    page = sign_in(browser, gw, gw.api_key)
    page.goto(f"{gw.url}/dashboard/usage?range=today")
    assert page.inner_text("[data-testid=total-requests]") == "6"
    charts = page.locator("[data-testid=chart] svg")
    assert charts.count() == 4
    for i in range(4):  # drawn: bars with a size, not just an empty frame
        box = charts.nth(i).bounding_box()
        assert box is not None and box["width"] > 600 and box["height"] > 150
    assert page.locator("[data-testid=chart] svg .series rect").count() >= 4
    assert "openai/gpt-4o-mini" in page.inner_text("[data-testid=by-model]")
    hand = sum(u["prompt_tokens"] * IN_PRICE + u["completion_tokens"] * OUT_PRICE for u in traffic.usages)
    assert page.inner_text("[data-testid=total-cost]") == f"${hand:.6f}"  # (under a cent: six places)
    memory = int(page.inner_text("[data-testid=total-memory]").replace(",", ""))
    assert memory > 0  # the recalled block's tokens, shown apart
    shot(page, "usage")
    page.click("text=30 days")
    assert page.url.endswith("range=30d") and page.inner_text("[data-testid=total-requests]") == "6"

    exported = rows(gw, gw.api_key)
    assert sum(int(r["requests"]) for r in exported) == 6
    assert sum(int(r["memory_tokens"]) for r in exported) == memory
    assert abs(sum(float(r["cost_usd"]) for r in exported) - hand) < 1e-9


def test_another_tenant_sees_none_of_it(gw: GatewayProcess, traffic: Traffic, browser: Any) -> None:
    other_key = gw.memgate("keys", "create", "--tenant", "logs-other", "--quiet").stdout.strip()
    page = sign_in(browser, gw, other_key)
    page.goto(f"{gw.url}/dashboard/logs")
    assert page.locator("[data-testid=log-row]").count() == 0
    answer = page.goto(f"{gw.url}/dashboard/logs/{traffic.recalled_request}")
    assert answer is not None and answer.status == 404 and "Lisbon" not in page.content()
    page.goto(f"{gw.url}/dashboard/usage?range=30d")
    assert page.inner_text("[data-testid=total-requests]") == "0"
    assert rows(gw, other_key, "30d") == []
    with httpx.Client(base_url=gw.url, timeout=30) as http:  # odd input: a clear answer, never a 500
        assert http.post("/dashboard/login", data={"api_key": other_key}).status_code == 303
        assert http.get("/dashboard/logs/%00").status_code == 404
        assert http.get("/dashboard/logs", params={"model": "a\x00b"}).status_code == 400
        assert http.get("/dashboard/logs", params={"status": "²²²", "until": "9999-12-31"}).status_code == 400
        assert http.get("/dashboard/usage", params={"range": "forever"}).status_code == 200  # (7 days)
    with httpx.Client(base_url=gw.url) as http:  # signed out: no data
        assert http.get("/dashboard/usage/export.csv").headers["location"].endswith("/dashboard/login")
        assert http.get("/dashboard/logs").headers["location"].endswith("/dashboard/login")


def test_deleting_a_message_or_a_thread_deletes_the_blocks_that_held_it(gw: GatewayProcess, traffic: Traffic,
                                                                         browser: Any) -> None:
    page = sign_in(browser, gw, gw.api_key)
    page.goto(f"{gw.url}/dashboard/logs/{traffic.recalled_request}")
    assert "Lisbon" in page.inner_text("[data-testid=memory-block]")
    # A message of the request's thread deleted: its blocks go (any of them may have held it).
    messages = httpx.get(f"{gw.base_url}/memory/threads/{traffic.second_thread}/messages", headers=gw.headers(),
                         timeout=30).json()["data"]
    deleted = httpx.request("DELETE", f"{gw.base_url}/memory/threads/{traffic.second_thread}/messages",
                            headers=gw.headers(), json={"message_ids": [messages[0]["id"]]}, timeout=30)
    assert deleted.status_code == 200, deleted.text
    page.reload()
    assert page.locator("[data-testid=memory-block]").count() == 0 and "no longer kept" in page.content()

    # A thread deleted: so go the blocks of other threads that recalled something of it.
    client = openai.OpenAI(base_url=gw.base_url, api_key=gw.api_key, max_retries=0)
    third = client.chat.completions.with_raw_response.create(
        model="fake/gpt-test", extra_headers={"x-thread-id": f"third-{uuid.uuid4().hex[:6]}", "x-resource-id": traffic.resource},
        messages=[{"role": "user", "content": "Remind me about the Lisbon tram rides I adore."}])
    request_id = third.headers["x-request-id"]
    page.goto(f"{gw.url}/dashboard/logs/{request_id}")
    wait_for(lambda: (page.reload(), page.locator("[data-testid=memory-block]").count() == 1)[1])  # (written in batches)
    assert traffic.first_thread in page.inner_text("[data-testid=memory-items]")
    deleted = httpx.delete(f"{gw.base_url}/memory/threads/{traffic.first_thread}", headers=gw.headers(), timeout=30)
    assert deleted.status_code == 200, deleted.text
    page.reload()
    assert page.locator("[data-testid=memory-block]").count() == 0 and "Lisbon" not in page.content()
    assert "no longer kept" in page.content()
