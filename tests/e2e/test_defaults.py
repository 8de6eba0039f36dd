"""`memgate up` as a new user starts it: no observer setting, no context timeout setting.

The rest of the suite pins the local observer and a 2,000 ms context timeout (a loaded CI
machine); this test runs the defaults: the default observer model (Gemini), which without a
key falls back to the local observer and says so, and the 300 ms context timeout.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import openai
from helpers import memory_text, observations, observer_idle

from memgate_testing.fake_provider import FakeProvider
from memgate_testing.gateway import GatewayProcess

PROVIDER_KEYS = ("GEMINI_API_KEY", "GOOGLE_API_KEY", "MEMGATE_PROVIDER_GOOGLE_API_KEY")


def test_the_defaults_remember_with_the_local_fallback(make_gateway: Callable[..., GatewayProcess],
                                                      provider: FakeProvider) -> None:
    gateway = make_gateway()
    for name in ("MEMGATE_OBSERVER_MODEL", "MEMGATE_CONTEXT_TIMEOUT_MS", *PROVIDER_KEYS):
        gateway.env.pop(name, None)
    gateway.start()
    banner = gateway.log()
    assert "Observer:   local" in banner
    assert "Observer model 'google/gemini-2.5-flash' has no provider key configured" in banner

    client = openai.OpenAI(base_url=gateway.base_url, api_key=gateway.api_key, max_retries=0)
    memory = {"x-thread-id": "defaults", "x-resource-id": "new-user"}
    client.chat.completions.create(model="fake/m", extra_headers=memory,
                                   messages=[{"role": "user", "content": "My favourite tree is the rowan."}])
    raw = client.chat.completions.with_raw_response.create(
        model="fake/m", extra_headers=memory, messages=[{"role": "user", "content": "Which tree do I like?"}])
    assert raw.headers["x-memory-degraded"] == "false"  # within the default 300 ms
    assert "My favourite tree is the rowan." in memory_text(provider.requests[-1])

    observer_idle(gateway)
    assert any("rowan" in o["text"] for o in observations(gateway, "defaults"))
    dashboard = httpx.get(f"{gateway.url}/dashboard/threads", headers=gateway.headers(), follow_redirects=True)
    assert "has no provider key configured" in dashboard.text
