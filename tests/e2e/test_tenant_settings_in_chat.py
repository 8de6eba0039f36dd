"""What a tenant saves on the dashboard's Settings page drives its chats: a saved provider key
is sent upstream (BYOK, marked so in the log), and its memory budget bounds the block."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator

import httpx
import pytest
from helpers import wait_for

from memgate_testing.fake_provider import FakeProvider
from memgate_testing.gateway import GatewayProcess


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, fake_provider: FakeProvider) -> Iterator[GatewayProcess]:
    # `openai/...` goes to the fake provider, but the gateway has no OpenAI key of its own;
    # `fake/...` (with a key of memgate's) falls back to it.
    root = tmp_path_factory.mktemp("tenant-settings")
    (root / "memgate.toml").write_text('[fallbacks]\n"fake/primary" = ["openai/gpt-4o-mini"]\n')
    process = GatewayProcess(root / "data", provider_url=fake_provider.base_url,
                             env={"MEMGATE_PROVIDER_OPENAI_BASE_URL": fake_provider.base_url, "OPENAI_API_KEY": "",
                                  "MEMGATE_CONFIG": str(root / "memgate.toml")})
    process.start()
    yield process
    process.stop()


@contextlib.contextmanager
def dashboard(gw: GatewayProcess, key: str) -> Iterator[httpx.Client]:
    """A client signed in to the dashboard (its session cookie)."""
    with httpx.Client(base_url=gw.url, timeout=30) as http:
        assert http.post("/dashboard/login", data={"api_key": key}).status_code == 303
        yield http


def chat(gw: GatewayProcess, key: str, text: str, **headers: str) -> httpx.Response:
    return httpx.post(f"{gw.base_url}/chat/completions", timeout=30, headers={"Authorization": f"Bearer {key}", **headers},
                      json={"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": text}]})


def test_a_saved_provider_key_is_used_upstream_and_marked_byok(gw: GatewayProcess, provider: FakeProvider) -> None:
    tenant = f"byok-{uuid.uuid4().hex[:6]}"
    key = gw.memgate("keys", "create", "--tenant", tenant, "--quiet").stdout.strip()
    refused = chat(gw, key, "hello")
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "provider_not_configured"

    saved = f"sk-tenant-{uuid.uuid4().hex}"
    with dashboard(gw, key) as http:
        assert http.post("/dashboard/settings/provider-keys", data={"provider": "openai", "provider_key": saved}
                         ).status_code == 303
    answer = chat(gw, key, "hello")
    assert answer.status_code == 200, answer.text
    assert provider.requests[-1]["api_key"] == saved
    # A key the caller sends itself wins over the saved one.
    own = httpx.post(f"{gw.base_url}/chat/completions", timeout=30, headers={
        "X-Memory-Gateway-Authorization": f"Bearer {key}", "Authorization": "Bearer sk-callers-own"},
        json={"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
    assert own.status_code == 200 and provider.requests[-1]["api_key"] == "sk-callers-own"

    with dashboard(gw, key) as http:
        page = wait_for(lambda: (lambda p: p if p.count("BYOK") >= 2 else None)(http.get("/dashboard/logs").text))
    assert saved not in page


def test_a_fallback_goes_out_with_the_key_the_tenant_saved_for_its_provider(
        gw: GatewayProcess, provider: FakeProvider) -> None:
    """The model's provider fails; its fallback's provider, for which memgate has no key, is
    used with the tenant's saved one (it was skipped, and the client got the first one's 502)."""
    tenant = f"byok-{uuid.uuid4().hex[:6]}"
    key = gw.memgate("keys", "create", "--tenant", tenant, "--quiet").stdout.strip()
    saved = f"sk-tenant-{uuid.uuid4().hex}"
    with dashboard(gw, key) as http:
        assert http.post("/dashboard/settings/provider-keys", data={"provider": "openai", "provider_key": saved}
                         ).status_code == 303
    provider.set_behavior(fail_status=503, fail_times=1)
    answer = httpx.post(f"{gw.base_url}/chat/completions", timeout=30, headers={"Authorization": f"Bearer {key}"},
                        json={"model": "fake/primary", "messages": [{"role": "user", "content": "hello"}]})
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-memgate-route"] == "openai/gpt-4o-mini"
    assert [r["api_key"] for r in provider.requests[-2:]] == ["fake-provider-key", saved]


def test_the_tenants_memory_budget_bounds_the_block(gw: GatewayProcess, provider: FakeProvider) -> None:
    tenant = f"budget-{uuid.uuid4().hex[:6]}"
    key = gw.memgate("keys", "create", "--tenant", tenant, "--quiet").stdout.strip()
    with dashboard(gw, key) as http:
        assert http.post("/dashboard/settings/provider-keys", data={"provider": "openai", "provider_key": "sk-budget"}
                         ).status_code == 303
    memory = {"x-thread-id": "t-budget", "x-resource-id": "r-budget"}
    for i in range(6):
        assert chat(gw, key, f"Fact {i}: my locker number at gym {i} is {1000 + i}. " * 5, **memory).status_code == 200
    roomy = chat(gw, key, "What are my locker numbers?", **memory)
    assert int(roomy.headers["x-memory-tokens"]) > 150

    with dashboard(gw, key) as http:
        assert http.post("/dashboard/settings/memory", data={"context_budget_tokens": "120"}).status_code == 303
    tight = chat(gw, key, "What are my locker numbers?", **memory)  # (the page's own replica: at once)
    assert 0 < int(tight.headers["x-memory-tokens"]) <= 120


def test_a_saved_key_memgate_cannot_read_is_not_replaced_by_its_own(
        make_gateway: Callable[..., GatewayProcess], provider: FakeProvider) -> None:
    """The secret the saved keys are sealed with changed: a request that would have used the
    tenant's key gets a 503 saying so, and is not sent upstream with the gateway's own key
    (which the operator pays for)."""
    gw = make_gateway(env={"MEMGATE_PROVIDER_OPENAI_BASE_URL": provider.base_url, "OPENAI_API_KEY": "sk-gateways-own",
                           "MEMGATE_SECRET_KEY": "first-secret-" + "x" * 40})
    gw.start()
    tenant = f"sealed-{uuid.uuid4().hex[:6]}"
    key = gw.memgate("keys", "create", "--tenant", tenant, "--quiet").stdout.strip()
    with dashboard(gw, key) as http:
        assert http.post("/dashboard/settings/provider-keys", data={"provider": "openai", "provider_key": "sk-tenants"}
                         ).status_code == 303
    assert chat(gw, key, "hello").status_code == 200 and provider.requests[-1]["api_key"] == "sk-tenants"
    gw.stop()
    gw.env["MEMGATE_SECRET_KEY"] = "second-secret-" + "y" * 40
    gw.start()
    sent = len(provider.requests)
    refused = chat(gw, key, "hello")
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "provider_key_unreadable", refused.text
    assert len(provider.requests) == sent
    other = gw.memgate("keys", "create", "--tenant", f"plain-{uuid.uuid4().hex[:6]}", "--quiet").stdout.strip()
    assert chat(gw, other, "hello").status_code == 200 and provider.requests[-1]["api_key"] == "sk-gateways-own"
