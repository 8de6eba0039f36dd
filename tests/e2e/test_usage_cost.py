"""Each request's cost, stored with its usage and reported, against a hand computation.

`openai/...` goes to the fake provider (which reports token counts like OpenAI does), so
requests are priced at gpt-4o-mini's rates: $0.15 per million tokens in, $0.60 out.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from helpers import wait_for

from memgate_testing.fake_provider import FakeProvider
from memgate_testing.gateway import GatewayProcess

ADMIN_KEY = "msk_test_admin_key_for_usage_cost_0001"
IN_PRICE, OUT_PRICE = 0.15 / 1e6, 0.60 / 1e6


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, fake_provider: FakeProvider) -> Iterator[GatewayProcess]:
    process = GatewayProcess(tmp_path_factory.mktemp("usage-cost") / "data", provider_url=fake_provider.base_url,
                             env={"MEMGATE_ADMIN_KEY": ADMIN_KEY, "MEMGATE_PROVIDER_OPENAI_BASE_URL": fake_provider.base_url,
                                  "MEMGATE_PROVIDER_OPENAI_API_KEY": "sk-fake"})
    process.start()
    yield process
    process.stop()


def _report(gw: GatewayProcess, tenant: str) -> dict[str, Any]:
    response = httpx.get(f"{gw.base_url}/admin/usage", headers=gw.headers(ADMIN_KEY),
                         params={"tenant": tenant, "since": "1h"}, timeout=30)
    assert response.status_code == 200, response.text
    report: dict[str, Any] = response.json()
    return report


def test_requests_are_priced_and_byok_ones_marked(gw: GatewayProcess, provider: FakeProvider) -> None:
    tenant = f"cost-{uuid.uuid4().hex[:8]}"
    key = gw.memgate("keys", "create", "--tenant", tenant, "--quiet").stdout.strip()
    usages = []
    for text, headers in [
        ("Tell me about Oslo in three words please.", {"Authorization": f"Bearer {key}"}),
        ("And about Bergen.", {"X-Memory-Gateway-Authorization": f"Bearer {key}", "Authorization": "Bearer sk-own"}),
    ]:
        answer = httpx.post(f"{gw.base_url}/chat/completions", headers=headers, timeout=30, json={
            "model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": text}]})
        assert answer.status_code == 200, answer.text
        usages.append(answer.json()["usage"])
    unpriced = httpx.post(f"{gw.base_url}/chat/completions", headers={"Authorization": f"Bearer {key}"}, timeout=30,
                          json={"model": "fake/x", "messages": [{"role": "user", "content": "hi"}]})
    assert unpriced.status_code == 200

    totals = wait_for(lambda: (lambda r: r if r["totals"]["requests"] == 3 else None)(_report(gw, tenant)),
                      timeout=15)["totals"]
    costs = [u["prompt_tokens"] * IN_PRICE + u["completion_tokens"] * OUT_PRICE for u in usages]
    assert totals["cost_usd"] == pytest.approx(sum(costs), abs=1e-8)
    assert totals["byok_cost_usd"] == pytest.approx(costs[1], abs=1e-8)
    assert totals["unpriced"] == 1  # fake/x is in no price table: no price, not a price of 0
    report = _report(gw, tenant)
    by_model = {r["model"]: r for r in report["by_model"]}
    assert by_model["openai/gpt-4o-mini"]["cost_usd"] == pytest.approx(sum(costs), abs=1e-8)
    assert by_model["fake/x"]["cost_usd"] == 0 and by_model["fake/x"]["unpriced"] == 1
    text = gw.memgate("usage", "--tenant", tenant)
    assert text.returncode == 0 and "cost USD" in text.stdout


def test_a_stream_the_client_left_is_logged_as_it_ended(gw: GatewayProcess, provider: FakeProvider) -> None:
    """The headers said 200 before the stream began; the usage row says how it ended: a
    stream whose client went away mid-way counts as an error (499), a whole one does not."""
    tenant = f"ended-{uuid.uuid4().hex[:8]}"
    key = gw.memgate("keys", "create", "--tenant", tenant, "--quiet").stdout.strip()
    provider.set_behavior(reply=" ".join(f"word{i}" for i in range(200)), chunk_delay_ms=30)
    body = {"model": "fake/x", "stream": True, "messages": [{"role": "user", "content": "Tell me a long story."}]}
    with httpx.Client(timeout=30) as client:
        with client.stream("POST", f"{gw.base_url}/chat/completions", headers=gw.headers(key), json=body) as left:
            assert left.status_code == 200
            for line in left.iter_lines():
                if line.startswith("data: {"):
                    break  # leave mid-stream
        provider.set_behavior(chunk_delay_ms=0)
        with client.stream("POST", f"{gw.base_url}/chat/completions", headers=gw.headers(key), json=body) as whole:
            assert whole.read().endswith(b"data: [DONE]\n\n")
    totals = wait_for(lambda: (lambda r: r if r["totals"]["requests"] == 2 else None)(_report(gw, tenant)),
                      timeout=15)["totals"]
    assert totals["errors"] == 1
