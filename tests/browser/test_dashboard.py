"""The dashboard in headless Chromium (Debian's chromium driven by Playwright)."""

from __future__ import annotations

import shutil
import threading
import uuid
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import openai
from helpers import observations, unavailable, wait_for

from memgate_testing.gateway import GatewayProcess

CHROMIUM = shutil.which("chromium")
pytestmark = unavailable(None if CHROMIUM else "Debian's chromium is not installed (make test installs it)", ours=True)


def test_threads_and_thread_page(gateway: GatewayProcess, browser, shot) -> None:  # type: ignore[no-untyped-def]
    thread = f"dash-{uuid.uuid4().hex[:6]}"
    client = openai.OpenAI(base_url=gateway.base_url, api_key=gateway.api_key, max_retries=0)
    client.chat.completions.create(model="fake/gpt-test", extra_headers={"x-thread-id": thread, "x-resource-id": "dash-user"},
                                   messages=[{"role": "user", "content": "My name is Kim and I work at Acme."}])
    wait_for(lambda: observations(gateway, thread), timeout=15)

    page = browser.new_page()
    page.goto(f"{gateway.url}/dashboard/threads")
    assert page.url.endswith("/dashboard/login")  # signed out: sent to sign in

    page.fill("#api_key", "msk_wrong_key_000000000000")
    page.click("input[type=submit]")
    assert "not valid" in page.inner_text("[role=alert]")

    page.fill("#api_key", gateway.api_key)
    page.click("input[type=submit]")
    page.wait_for_url("**/dashboard/threads")
    assert page.inner_text("[data-testid=tenant]") == "default"
    row = page.locator("[data-testid=thread-row]", has_text=thread)
    assert row.count() == 1
    assert "dash-user" in page.content()

    row.locator("[data-testid=thread-link]").click()
    page.wait_for_url(f"**/dashboard/threads/{thread}")
    messages = page.locator("[data-testid=message]")
    assert messages.count() == 2
    assert "My name is Kim" in messages.nth(0).inner_text()
    obs = page.locator("[data-testid=observation]")
    assert obs.count() >= 1
    assert "Kim" in obs.first.inner_text()
    shot(page, "thread")

    # Another tenant signs in and sees none of it.
    other_key = gateway.memgate("keys", "create", "--tenant", "dash-other", "--quiet").stdout.strip()
    other = browser.new_page()
    other.goto(f"{gateway.url}/dashboard/login")
    other.fill("#api_key", other_key)
    other.click("input[type=submit]")
    other.wait_for_url("**/dashboard/threads")
    assert thread not in other.content()
    other.goto(f"{gateway.url}/dashboard/threads/{thread}")
    assert "Kim" not in other.content()


def test_another_site_cannot_sign_a_visitor_in(gateway: GatewayProcess, browser, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # Login CSRF: a page on another site (localhost is not the same site as 127.0.0.1) posts
    # the sign-in form with its own key, to sign the visitor into the attacker's tenant.
    attacker_key = gateway.memgate("keys", "create", "--tenant", "dash-attacker", "--quiet").stdout.strip()
    (tmp_path / "index.html").write_text(
        f'<form method="post" action="{gateway.url}/dashboard/login">'
        f'<input name="api_key" value="{attacker_key}"></form><script>document.forms[0].submit()</script>'
    )
    site = ThreadingHTTPServer(("127.0.0.1", 0), partial(SimpleHTTPRequestHandler, directory=str(tmp_path)))
    threading.Thread(target=site.serve_forever, daemon=True).start()
    context = browser.new_context()
    try:
        page = context.new_page()
        with page.expect_response(f"{gateway.url}/dashboard/login") as answer:
            page.goto(f"http://localhost:{site.server_port}/index.html")
        assert answer.value.status == 403
        assert answer.value.json()["error"]["code"] == "cross_site_request"
        assert [c for c in context.cookies() if c["name"] == "memgate_session"] == []
        page.goto(f"{gateway.url}/dashboard/threads")
        assert page.url.endswith("/dashboard/login")  # still signed out
    finally:
        context.close()
        site.shutdown()


def test_no_other_site_can_frame_the_dashboard(gateway: GatewayProcess, browser, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # Clickjacking: another site (localhost) frames the sign-in page under its own content.
    (tmp_path / "frame.html").write_text(f'<iframe id="f" src="{gateway.url}/dashboard/login"></iframe>'
                                         '<iframe id="g" src="own.html"></iframe>')
    (tmp_path / "own.html").write_text('<input id="api_key">')  # (a page that may be framed: the control)
    site = ThreadingHTTPServer(("127.0.0.1", 0), partial(SimpleHTTPRequestHandler, directory=str(tmp_path)))
    threading.Thread(target=site.serve_forever, daemon=True).start()
    context = browser.new_context()
    try:
        page = context.new_page()
        violations: list[str] = []
        page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
        answer = page.goto(f"{gateway.url}/dashboard/login")
        assert answer is not None and answer.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
        assert page.locator("#api_key").count() == 1 and violations == []  # the page itself is unharmed

        page.goto(f"http://localhost:{site.server_port}/frame.html", wait_until="load")  # (frames loaded too)
        assert page.locator("#f").count() == 1
        assert page.frame_locator("#g").locator("#api_key").count() == 1  # a framed page's field is seen ...
        assert page.frame_locator("#f").locator("#api_key").count() == 0  # ... the dashboard's is not: refused
    finally:
        context.close()
        site.shutdown()
