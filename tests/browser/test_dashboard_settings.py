"""The Settings page in headless Chromium: a tenant's memory thresholds and budgets (stored,
and used by the memory API), its API keys (created and shown once, limited, revoked: the key
works, then is limited, then stops), its provider keys (stored encrypted, never shown again);
another tenant sees and changes none of it; every form refuses a cross-site post."""

from __future__ import annotations

import asyncio
import shutil
import stat
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import asyncpg
import httpx
from helpers import unavailable, wait_for

from memgate_core.encryption import SECRET_FILE, SecretBox
from memgate_store import Stores
from memgate_testing.gateway import GatewayProcess

from .conftest import sign_in

CHROMIUM = shutil.which("chromium")
pytestmark = unavailable(None if CHROMIUM else "Debian's chromium is not installed (make test installs it)", ours=True)

SETTINGS = "/dashboard/settings"


def _tenant_with_key(gateway: GatewayProcess, name: str) -> tuple[str, str]:
    tenant = f"{name}-{uuid.uuid4().hex[:6]}"
    return tenant, gateway.memgate("keys", "create", "--tenant", tenant, "--quiet").stdout.strip()


def _in_thread(coro: Any) -> Any:
    """Run a coroutine to its end (outside Playwright's own event loop)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _db(gateway: GatewayProcess, query: str, *args: Any) -> list[Any]:
    async def fetch() -> list[Any]:
        conn = await asyncpg.connect(gateway.runtime()["database_url"])
        try:
            return list(await conn.fetch(query, *args))
        finally:
            await conn.close()
    return list(_in_thread(fetch()))


def _post(gateway: GatewayProcess, page: Any, path: str, data: dict[str, str], **headers: str) -> httpx.Response:
    """A form post with the page's session cookie (as another site could make the browser send)."""
    session = next(c["value"] for c in page.context.cookies() if c["name"] == "memgate_session")
    return httpx.post(gateway.url + path, data=data, headers=headers, cookies={"memgate_session": session})


def _models(gateway: GatewayProcess, key: str) -> httpx.Response:
    return httpx.get(f"{gateway.base_url}/models", headers=gateway.headers(key))


def _submit(page: Any, selector: str) -> Any:
    """Click a submit button; the response of the page it leads to."""
    with page.expect_navigation() as answer:
        page.click(selector)
    return answer.value


def test_memory_thresholds_and_budgets(gateway: GatewayProcess, browser: Any) -> None:
    tenant, key = _tenant_with_key(gateway, "set-memory")
    page = sign_in(browser, gateway, key)
    page.goto(gateway.url + SETTINGS)
    assert page.inner_text("[data-testid=effective-activation_tokens]") == "30,000"  # the gateway's
    assert page.locator("[role=alert]").count() == 0

    page.fill("#activation_tokens", "12345")
    page.fill("#observation_budget_tokens", "23,456")
    page.fill("#context_budget_tokens", "1500")
    page.fill("#related_budget_tokens", "300")
    _submit(page, "[data-testid=save-memory]")
    assert page.url.endswith("/dashboard/settings?saved=memory")
    assert "saved" in page.inner_text("[data-testid=done]")
    assert page.inner_text("[data-testid=effective-activation_tokens]") == "12,345"
    assert page.input_value("#observation_budget_tokens") == "23456"

    # Stored: the memory API gives a thread of this tenant these thresholds; the budgets are its row.
    headers = gateway.headers(key)
    assert httpx.post(f"{gateway.base_url}/memory/threads", headers=headers,
                      json={"resource_id": "r1", "id": "t1"}).status_code == 201
    record = httpx.get(f"{gateway.base_url}/memory/threads/t1/observations/record", headers=headers).json()
    assert record["thresholds"]["observation_tokens"] == 12345
    assert record["thresholds"]["reflection_tokens"] == 23456
    expected = [(12345, 23456, 1500, 300)]
    row_query = ("SELECT activation_tokens, observation_budget_tokens, context_budget_tokens, related_budget_tokens "
                 "FROM tenant_settings WHERE tenant = $1")
    assert [tuple(r) for r in _db(gateway, row_query, tenant)] == expected

    async def budget() -> Any:  # what the chat path will ask (the store API the lead wires in)
        stores = await Stores.connect(gateway.runtime()["database_url"], max_size=1)
        try:
            return await stores.tenant_settings.memory_budget(tenant, budget_tokens=4000, related_budget_tokens=None)
        finally:
            await stores.close()
    assert (lambda b: (b.budget_tokens, b.related_budget_tokens))(_in_thread(budget())) == (1500, 300)

    # Bad input: a clear error on the page, and nothing stored.
    for field, value, says in (("activation_tokens", "50", "Observation threshold must be a whole number from 100"),
                               ("context_budget_tokens", "lots", "Memory budget must be a whole number"),
                               ("context_budget_tokens", "100001", "Memory budget must be a whole number from 1 to 100,000"),
                               ("related_budget_tokens", "2000", "recall budget cannot be more than the memory budget")):
        page.goto(gateway.url + SETTINGS)
        page.fill("#activation_tokens", "999")
        page.fill(f"#{field}", value)
        answer = _submit(page, "[data-testid=save-memory]")
        assert answer.status == 400
        assert says in page.inner_text("[data-testid=memory-error]")
        assert page.input_value(f"#{field}") == value  # (kept to be corrected)
        assert [tuple(r) for r in _db(gateway, row_query, tenant)] == expected

    # Emptied fields go back to the gateway's defaults.
    page.goto(gateway.url + SETTINGS)
    for field in ("activation_tokens", "observation_budget_tokens", "context_budget_tokens", "related_budget_tokens"):
        page.fill(f"#{field}", "")
    _submit(page, "[data-testid=save-memory]")
    assert [tuple(r) for r in _db(gateway, row_query, tenant)] == [(None, None, None, None)]
    record = httpx.get(f"{gateway.base_url}/memory/threads/t1/observations/record", headers=headers).json()
    assert record["thresholds"]["observation_tokens"] == 30_000


def test_api_keys_shown_once_limited_and_revoked(gateway: GatewayProcess, browser: Any, shot: Any) -> None:
    tenant, key = _tenant_with_key(gateway, "set-keys")
    page = sign_in(browser, gateway, key)
    page.goto(gateway.url + SETTINGS)
    assert page.locator("[data-testid=keys-error]").count() == 0
    page.fill("#key_name", "ci-robot")
    page.fill("#new_burst", "10")  # a burst with no rpm: refused, nothing created
    assert _submit(page, "[data-testid=create-key-submit]").status == 400
    assert "burst needs a non-zero rpm" in page.inner_text("[data-testid=keys-error]")
    assert page.input_value("#key_name") == "ci-robot"
    assert len(_db(gateway, "SELECT 1 FROM api_keys WHERE tenant = $1", tenant)) == 1
    page.fill("#new_burst", "")
    page.fill("#new_rpm", "77")
    page.fill("#new_memory_read_rpm", "33")
    _submit(page, "[data-testid=create-key-submit]")
    assert page.url.endswith("/created")
    new_key = page.inner_text("[data-testid=new-key]").strip()
    assert new_key.startswith("msk_") and len(new_key) > 40
    shot(page, "settings-key-created")

    page.reload()  # shown once: not again
    assert page.locator("[data-testid=new-key]").count() == 0
    assert page.locator("[data-testid=key-not-shown]").count() == 1
    assert new_key not in page.content()
    page.goto(gateway.url + SETTINGS)
    assert new_key not in page.content()
    row = page.locator("[data-testid=key-row]", has_text="ci-robot")
    assert row.count() == 1 and new_key[:10] in row.inner_text() and "77" in row.inner_text()
    assert [r["is_admin"] for r in _db(gateway, "SELECT is_admin FROM api_keys WHERE tenant = $1", tenant)] == [False, False]

    # The new key works, with its limits.
    models = _models(gateway, new_key)
    assert models.status_code == 200 and models.headers["x-ratelimit-limit"] == "77"
    memory = httpx.get(f"{gateway.base_url}/memory/threads", headers=gateway.headers(new_key))
    assert memory.headers["x-ratelimit-limit"] == "33" and memory.headers["x-ratelimit-scope"] == "memory_read"

    # Its limits change.
    row.locator("[data-testid=manage-key]").click()
    page.wait_for_url("**/dashboard/settings/keys/*")
    assert page.input_value("#rpm") == "77"
    page.fill("#rpm", "-3")
    assert _submit(page, "[data-testid=save-limits]").status == 400
    assert "whole number" in page.inner_text("[data-testid=key-error]")
    page.fill("#rpm", "55")
    page.fill("#burst", "5")
    page.fill("#memory_read_rpm", "")
    _submit(page, "[data-testid=save-limits]")
    assert page.url.endswith("?saved=limits")
    wait_for(lambda: _models(gateway, new_key).headers.get("x-ratelimit-limit") == "55", timeout=40)
    assert httpx.get(f"{gateway.base_url}/memory/threads",
                     headers=gateway.headers(new_key)).headers["x-ratelimit-limit"] == "6000"  # the default again

    # Revoking needs the confirmation box (the server checks it too).
    key_id = page.locator("[data-testid=key-row]", has_text="ci-robot").get_attribute("data-key-id")
    assert _post(gateway, page, f"{SETTINGS}/keys/{key_id}/revoke", {}).status_code == 400
    assert _models(gateway, new_key).status_code == 200
    page.goto(f"{gateway.url}{SETTINGS}/keys/{key_id}")
    shot(page, "settings-key")
    page.check("[data-testid=confirm-revoke]")
    _submit(page, "[data-testid=revoke-key]")
    assert page.url.endswith("?saved=revoked")
    assert "revoked" in page.locator("[data-testid=key-row]", has_text="ci-robot").inner_text()
    wait_for(lambda: _models(gateway, new_key).status_code == 401, timeout=40)  # (the auth cache's time at most)

    # The key this session signed in with cannot be revoked from it.
    own_id = page.locator("[data-testid=key-row]", has=page.locator("[data-testid=current-key]")).get_attribute("data-key-id")
    page.goto(f"{gateway.url}{SETTINGS}/keys/{own_id}")
    assert page.locator("[data-testid=revoke-key]").count() == 0
    refused = _post(gateway, page, f"{SETTINGS}/keys/{own_id}/revoke", {"confirm": "yes"})
    assert refused.status_code == 400 and "signed in with" in refused.text
    assert _models(gateway, key).status_code == 200

    # Never an admin key from here, whatever the form says.
    _post(gateway, page, f"{SETTINGS}/keys", {"name": "sneaky", "admin": "true", "is_admin": "true"})
    assert [r["is_admin"] for r in _db(gateway, "SELECT is_admin FROM api_keys WHERE tenant = $1", tenant)] == [False] * 3


def test_provider_keys_stored_encrypted_and_never_shown(gateway: GatewayProcess, browser: Any, shot: Any) -> None:
    tenant, key = _tenant_with_key(gateway, "set-byok")
    secret_value = f"sk-test-{uuid.uuid4().hex}-WXYZ"
    page = sign_in(browser, gateway, key)
    page.goto(gateway.url + SETTINGS)
    assert page.locator("[data-testid=no-provider-keys]").count() == 1

    # Bad input: a clear error, nothing stored, and the key is not echoed back.
    for value, says in (("has a space-in-it-1234", "printable ASCII without spaces"), ("   ", "empty")):
        page.select_option("#provider", "openai")
        page.fill("#provider_key", value)
        assert _submit(page, "[data-testid=save-provider-key-submit]").status == 400
        assert says in page.inner_text("[data-testid=provider-keys-error]")
        assert page.input_value("#provider_key") == "" and "has a space" not in page.content()
    unknown = _post(gateway, page, f"{SETTINGS}/provider-keys", {"provider": "nope", "provider_key": secret_value})
    assert unknown.status_code == 400 and "Choose one of the providers" in unknown.text
    assert secret_value not in unknown.text
    assert _db(gateway, "SELECT * FROM provider_keys WHERE tenant = $1", tenant) == []

    page.select_option("#provider", "openai")
    page.fill("#provider_key", secret_value)
    _submit(page, "[data-testid=save-provider-key-submit]")
    assert page.url.endswith("?saved=provider-key")
    row = page.locator("[data-testid=provider-key-row]")
    assert row.count() == 1 and "openai" in row.inner_text()
    assert page.inner_text("[data-testid=provider-key-last4]") == "…WXYZ"
    assert secret_value not in page.content() and secret_value[8:24] not in page.content()
    page.select_option("#provider", "google")
    page.fill("#provider_key", "AIza-another-provider-key-5678")
    _submit(page, "[data-testid=save-provider-key-submit]")

    # In Postgres: sealed, not the key.
    rows = _db(gateway, "SELECT provider, sealed, last4, row_to_json(p)::text AS everything FROM provider_keys p "
                        "WHERE tenant = $1 ORDER BY provider", tenant)
    assert [r["provider"] for r in rows] == ["google", "openai"]
    openai_row = rows[1]
    assert openai_row["last4"] == "WXYZ"
    assert secret_value.encode() not in openai_row["sealed"] and secret_value not in openai_row["everything"]
    assert secret_value[8:24].encode() not in openai_row["sealed"]
    # Sealed under the data dir's secret, a file only its owner may read.
    secret_file = gateway.data_dir / SECRET_FILE
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600

    # What the chat path reads (the store API the lead wires in): the plaintexts, by provider.
    async def for_tenant() -> dict[str, str]:
        stores = await Stores.connect(gateway.runtime()["database_url"], max_size=1,
                                      secret_box=SecretBox.for_data_dir(None, gateway.data_dir))
        try:
            return await stores.provider_keys.for_tenant(tenant)
        finally:
            await stores.close()
    assert _in_thread(for_tenant()) == {"openai": secret_value, "google": "AIza-another-provider-key-5678"}
    assert secret_value not in gateway.log()  # never logged

    page.locator("[data-testid=provider-key-row][data-provider=google] [data-testid=remove-provider-key]").click()
    page.wait_for_url("**/dashboard/settings?saved=provider-key-removed")
    assert [r["provider"] for r in _db(gateway, "SELECT provider FROM provider_keys WHERE tenant = $1", tenant)] == [
        "openai"]
    assert page.locator("[data-testid=provider-key-row]").count() == 1


def test_another_tenant_sees_and_changes_none_of_it(gateway: GatewayProcess, browser: Any, shot: Any) -> None:
    tenant, key = _tenant_with_key(gateway, "set-owner")
    page = sign_in(browser, gateway, key)
    page.goto(gateway.url + SETTINGS)
    page.fill("#activation_tokens", "4321")
    page.fill("#context_budget_tokens", "2000")
    _submit(page, "[data-testid=save-memory]")
    page.fill("#key_name", "owner-only-key")
    page.fill("#new_rpm", "120")
    page.fill("#new_burst", "20")
    _submit(page, "[data-testid=create-key-submit]")
    owner_new_key = page.inner_text("[data-testid=new-key]").strip()
    page.goto(gateway.url + SETTINGS)
    page.select_option("#provider", "openai")
    page.fill("#provider_key", "sk-owner-provider-key-QRST")
    _submit(page, "[data-testid=save-provider-key-submit]")
    key_id = page.locator("[data-testid=key-row]", has_text="owner-only-key").get_attribute("data-key-id")
    shot(page, "settings")

    _, other_key = _tenant_with_key(gateway, "set-other")
    other = sign_in(browser, gateway, other_key)
    other.goto(gateway.url + SETTINGS)
    html = other.content()
    assert "owner-only-key" not in html and owner_new_key[:10] not in html and "QRST" not in html
    assert other.locator("[data-testid=key-row]").count() == 1  # its own sign-in key only
    assert other.locator("[data-testid=provider-key-row]").count() == 0
    assert other.inner_text("[data-testid=effective-activation_tokens]") == "30,000"
    assert other.goto(f"{gateway.url}{SETTINGS}/keys/{key_id}").status == 404
    assert other.goto(f"{gateway.url}{SETTINGS}/keys/{key_id}/created").status == 404

    # Its forms cannot reach the owner's key or provider key either.
    assert _post(gateway, other, f"{SETTINGS}/keys/{key_id}/revoke", {"confirm": "yes"}).status_code == 404
    assert _post(gateway, other, f"{SETTINGS}/keys/{key_id}/limits", {"rpm": "1"}).status_code == 404
    assert _post(gateway, other, f"{SETTINGS}/provider-keys/openai/remove", {}).status_code == 404
    assert _models(gateway, owner_new_key).status_code == 200
    assert _models(gateway, owner_new_key).headers["x-ratelimit-limit"] == "120"
    assert len(_db(gateway, "SELECT 1 FROM provider_keys WHERE tenant = $1", tenant)) == 1
    assert _db(gateway, "SELECT activation_tokens FROM tenant_settings WHERE tenant = $1", tenant)[0][0] == 4321

    # Signed out: every page and form sends to sign in.
    anonymous = httpx.get(gateway.url + SETTINGS)
    assert anonymous.status_code in (302, 303, 307) and anonymous.headers["location"].endswith("/dashboard/login")
    assert httpx.post(f"{gateway.url}{SETTINGS}/keys", data={"name": "x"}).status_code == 303
    assert "owner-only-key" in page.goto(gateway.url + SETTINGS).text()  # (the owner still sees it)


def test_every_settings_form_refuses_cross_site_posts(gateway: GatewayProcess, browser: Any) -> None:
    tenant, key = _tenant_with_key(gateway, "set-csrf")
    page = sign_in(browser, gateway, key)
    page.goto(gateway.url + SETTINGS)
    page.fill("#key_name", "target")
    _submit(page, "[data-testid=create-key-submit]")
    target_key = page.inner_text("[data-testid=new-key]").strip()
    page.goto(gateway.url + SETTINGS)
    page.select_option("#provider", "openai")
    page.fill("#provider_key", "sk-csrf-provider-key-LMNO")
    _submit(page, "[data-testid=save-provider-key-submit]")
    key_id = page.locator("[data-testid=key-row]", has_text="target").get_attribute("data-key-id")

    forms = [
        ("/memory", {"activation_tokens": "100"}),
        ("/keys", {"name": "from-another-site"}),
        (f"/keys/{key_id}/limits", {"rpm": "1"}),
        (f"/keys/{key_id}/revoke", {"confirm": "yes"}),
        ("/provider-keys", {"provider": "openai", "provider_key": "sk-attacker-key-0000"}),
        ("/provider-keys/openai/remove", {}),
    ]
    for path, data in forms:
        for headers in ({"sec-fetch-site": "cross-site"}, {"sec-fetch-site": "same-site"},
                        {"origin": "http://evil.example"}):
            refused = _post(gateway, page, SETTINGS + path, data, **headers)
            assert refused.status_code == 403, (path, headers)
            assert refused.json()["error"]["code"] == "cross_site_request"

    # Nothing changed.
    assert _db(gateway, "SELECT * FROM tenant_settings WHERE tenant = $1", tenant) == []
    assert sorted(r["name"] for r in _db(gateway, "SELECT name FROM api_keys WHERE tenant = $1", tenant)
                  if r["name"]) == ["target"]
    assert _models(gateway, target_key).status_code == 200
    assert _models(gateway, target_key).headers["x-ratelimit-limit"] == "6000"
    assert [r["last4"] for r in _db(gateway, "SELECT last4 FROM provider_keys WHERE tenant = $1", tenant)] == ["LMNO"]
    # The same post from the dashboard's own page goes through (the check is not just refusing all).
    accepted = _post(gateway, page, SETTINGS + "/memory", {"activation_tokens": "100"}, **{"sec-fetch-site": "same-origin"})
    assert accepted.status_code == 303
    assert _db(gateway, "SELECT activation_tokens FROM tenant_settings WHERE tenant = $1", tenant)[0][0] == 100
