"""The dashboard's memory pages in headless Chromium: the threads list (searched, filtered by
resource, paged), a resource's page, memory search, a thread's observation generations, and
deleting a thread or a resource after a confirmation page. Another tenant sees none of it on
any page, and a cross-site post of a delete form deletes nothing.

The memory here belongs to a tenant of its own (the shared gateway's default tenant has
every other test's threads), so that its lists and totals are exactly what this module made.
"""

from __future__ import annotations

import shutil
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import openai
import pytest
from helpers import observations, observer_idle, unavailable, wait_for

from memgate_testing.gateway import GatewayProcess

from .conftest import sign_in

CHROMIUM = shutil.which("chromium")
pytestmark = unavailable(None if CHROMIUM else "Debian's chromium is not installed (make test installs it)", ours=True)

BULK = 55  # threads of one resource: more than a page (50)


def _tag() -> str:
    return uuid.uuid4().hex[:8]


@dataclass
class Memory:
    """What the module's tenant remembers."""

    key: str
    other_key: str  # another tenant's
    chatted: str  # a thread made by chat, observed
    chatted_resource: str
    titled: str  # a thread with a title
    bulk_resource: str  # BULK threads
    api: httpx.Client  # the memory API as the tenant


def _chat(gateway: GatewayProcess, key: str, thread: str, resource: str, text: str) -> None:
    client = openai.OpenAI(base_url=gateway.base_url, api_key=key, max_retries=0)
    client.chat.completions.create(model="fake/gpt-test", extra_headers={"x-thread-id": thread, "x-resource-id": resource},
                                   messages=[{"role": "user", "content": text}])


def _searched(api: httpx.Client, resource: str, query: str) -> list[dict[str, Any]]:
    response = api.post("/search", json={"resource_id": resource, "query": query, "limit": 100})
    assert response.status_code == 200, response.text
    return list(response.json()["data"])


def _remember(gateway: GatewayProcess, memory: Memory, thread: str, resource: str, fact: str) -> None:
    """One chat exchange stating `fact`, observed and indexed before returning."""
    _chat(gateway, memory.key, thread, resource, fact)
    wait_for(lambda: observations(gateway, thread, memory.key), timeout=20)
    wait_for(lambda: any(h["thread_id"] == thread for h in _searched(memory.api, resource, fact)), timeout=15)


@pytest.fixture(scope="module")
def memory(gateway: GatewayProcess) -> Memory:
    tenant = f"dash-mem-{_tag()}"
    key = gateway.memgate("keys", "create", "--tenant", tenant, "--quiet").stdout.strip()
    other_key = gateway.memgate("keys", "create", "--tenant", f"dash-mem-other-{_tag()}", "--quiet").stdout.strip()
    api = httpx.Client(base_url=f"{gateway.base_url}/memory", headers=gateway.headers(key), timeout=30)
    found = Memory(key, other_key, f"chat-{_tag()}", f"kim-{_tag()}", f"titled-{_tag()}", f"bulk-{_tag()}", api)
    for i in range(BULK):  # (created, not chatted: cheap)
        assert api.post("/threads", json={"id": f"{found.bulk_resource}-t{i:02d}",
                                          "resource_id": found.bulk_resource}).status_code == 201
    assert api.post("/threads", json={"id": found.titled, "resource_id": found.chatted_resource,
                                      "title": "Trip to Oslo in May"}).status_code == 201
    _remember(gateway, found, found.chatted, found.chatted_resource, "My name is Kim and I work at Acme.")
    return found


def _other(browser: Any, gateway: GatewayProcess, memory: Memory) -> Any:
    return sign_in(browser, gateway, memory.other_key)


def _rows(page: Any) -> list[str]:
    """The ids of the threads the page lists, in order."""
    return [str(r.get_attribute("data-thread-id")) for r in page.locator("[data-testid=thread-row]").all()]


def _at(page: Any, path: str, /, **query: str) -> None:
    """Wait until the page is at `path` with (at least) this query."""
    def there(url: str) -> bool:
        parts = urlsplit(url)
        return parts.path == path and query.items() <= dict(parse_qsl(parts.query, keep_blank_values=True)).items()
    page.wait_for_url(there)


def test_threads_are_searched_filtered_and_paged(gateway: GatewayProcess, memory: Memory, browser, shot) -> None:  # type: ignore[no-untyped-def]
    page = sign_in(browser, gateway, memory.key)
    total = memory.api.get("/threads").json()["total"]
    assert total == BULK + 2
    assert page.inner_text("[data-testid=page-info]") == f"Page 1 of 2 · {total} threads"
    assert len(_rows(page)) == 50
    assert page.locator("nav a.active").inner_text() == "Threads"
    chatted = page.locator("[data-testid=thread-row]", has_text=memory.chatted)  # (the newest: on page 1)
    assert chatted.locator("[data-testid=resource-link]").inner_text() == memory.chatted_resource
    counts = chatted.locator("td.num").all_inner_texts()
    assert counts[0] == "2" and int(counts[1]) >= 1  # messages, observations
    shot(page, "threads")

    # Search by title (any case) and by a part of the id.
    page.fill("[data-testid=thread-search]", "oslo")
    page.click("form[role=search] button[type=submit]")
    _at(page, "/dashboard/threads", q="oslo")
    assert _rows(page) == [memory.titled]
    assert "Trip to Oslo in May" in page.inner_text("[data-testid=thread-row]")
    page.fill("[data-testid=thread-search]", memory.chatted[5:].upper())
    page.click("form[role=search] button[type=submit]")
    _at(page, "/dashboard/threads", q=memory.chatted[5:].upper())
    assert _rows(page) == [memory.chatted]
    page.fill("[data-testid=thread-search]", "no-such-thread-anywhere")
    page.click("form[role=search] button[type=submit]")
    _at(page, "/dashboard/threads", q="no-such-thread-anywhere")
    assert _rows(page) == [] and page.locator("[data-testid=no-threads]").count() == 1

    # Filtered by resource: BULK threads, paged.
    page.fill("[data-testid=thread-search]", "")
    page.select_option("[data-testid=resource-filter]", memory.bulk_resource)
    page.click("form[role=search] button[type=submit]")
    _at(page, "/dashboard/threads", q="", resource_id=memory.bulk_resource)
    first = _rows(page)
    assert len(first) == 50 and all(t.startswith(memory.bulk_resource) for t in first)
    assert page.inner_text("[data-testid=page-info]") == f"Page 1 of 2 · {BULK} threads"
    assert page.locator("[data-testid=newer]").count() == 0
    page.click("[data-testid=older]")
    _at(page, "/dashboard/threads", resource_id=memory.bulk_resource, page="2")
    second = _rows(page)
    assert len(second) == BULK - 50 and not set(second) & set(first)
    assert set(first) | set(second) == {f"{memory.bulk_resource}-t{i:02d}" for i in range(BULK)}
    assert page.locator("[data-testid=older]").count() == 0
    assert page.locator("[data-testid=resource-filter]").input_value() == memory.bulk_resource  # (kept across pages)
    page.click("[data-testid=newer]")
    _at(page, "/dashboard/threads", resource_id=memory.bulk_resource, page="1")
    assert _rows(page) == first

    beyond = page.goto(f"{gateway.url}/dashboard/threads?page=9")
    assert beyond is not None and beyond.status == 200 and _rows(page) == []
    assert page.locator("[data-testid=newer]").count() == 1
    bad = page.goto(f"{gateway.url}/dashboard/threads?resource_id=no%20spaces")
    assert bad is not None and bad.status == 400
    assert "no resource id" in page.inner_text("[role=alert]")

    # A thread's resource link leads to the resource's page.
    page.goto(f"{gateway.url}/dashboard/threads?q={memory.chatted}")
    page.click("[data-testid=thread-row] [data-testid=resource-link]")
    page.wait_for_url(f"**/dashboard/resources/{memory.chatted_resource}")


def test_a_resource_page_shows_its_threads_and_what_recall_draws_on(gateway: GatewayProcess, memory: Memory,
                                                                  browser, shot) -> None:  # type: ignore[no-untyped-def]
    page = sign_in(browser, gateway, memory.key)
    page.goto(f"{gateway.url}/dashboard/resources/{memory.chatted_resource}")
    assert set(_rows(page)) == {memory.chatted, memory.titled}
    assert page.inner_text("[data-testid=page-info]") == "Page 1 of 1"
    observed = page.locator("[data-testid=resource-observation]")
    assert observed.count() == len(observations(gateway, memory.chatted, memory.key)) >= 1
    assert "Kim" in observed.first.inner_text()
    shot(page, "resource")
    observed.first.locator("[data-testid=observation-thread]").click()
    page.wait_for_url(f"**/dashboard/threads/{memory.chatted}#obs-*")
    assert page.locator("[data-testid=generation-observation]", has_text="Kim").count() >= 1

    # Bulk: a page of 50 threads and the next, no observations.
    page.goto(f"{gateway.url}/dashboard/resources/{memory.bulk_resource}")
    assert len(_rows(page)) == 50 and page.locator("[data-testid=resource-observation]").count() == 0
    page.click("[data-testid=older]")
    _at(page, f"/dashboard/resources/{memory.bulk_resource}", page="2")
    assert len(_rows(page)) == BULK - 50


def test_memory_search_finds_messages_and_observations(gateway: GatewayProcess, memory: Memory, browser, shot) -> None:  # type: ignore[no-untyped-def]
    page = sign_in(browser, gateway, memory.key)
    page.goto(f"{gateway.url}/dashboard/search")
    page.fill("[data-testid=memory-query]", "Where does Kim work?")
    page.click("form[role=search] button[type=submit]")
    _at(page, "/dashboard/search", q="Where does Kim work?")
    results = page.locator("[data-testid=search-result]")
    assert results.count() >= 1
    assert any("Acme" in r and memory.chatted in r for r in results.all_inner_texts())
    assert set(page.locator("[data-testid=result-thread]").all_inner_texts()) == {memory.chatted}  # (all it remembers)
    assert set(results.locator("[data-testid=kind]").all_inner_texts()) == {"message", "observation"}
    scores = [float(s) for s in results.locator("td.num").all_inner_texts()]
    assert scores == sorted(scores, reverse=True) and scores[-1] > 0
    assert all(d.startswith("20") for d in results.locator("td.when").all_inner_texts())  # dates
    shot(page, "search")

    # One resource (the bulk one has no memory), one thread.
    page.select_option("[data-testid=search-resource]", memory.bulk_resource)
    page.click("form[role=search] button[type=submit]")
    _at(page, "/dashboard/search", resource_id=memory.bulk_resource)
    assert page.locator("[data-testid=search-result]").count() == 0
    assert page.locator("[data-testid=no-results]").count() == 1
    page.goto(f"{gateway.url}/dashboard/search?q=Kim&thread_id={memory.chatted}")
    threads = page.locator("[data-testid=result-thread]").all_inner_texts()
    assert threads and set(threads) == {memory.chatted}
    page.goto(f"{gateway.url}/dashboard/search?q=Kim&thread_id={memory.titled}")  # (no memory)
    assert page.locator("[data-testid=search-result]").count() == 0

    answer = page.goto(f"{gateway.url}/dashboard/search?q={'x' * 4001}")
    assert answer is not None and answer.status == 400 and "at most 4000" in page.inner_text("[role=alert]")


def test_a_threads_generations_show_what_the_reflector_condensed(gateway: GatewayProcess, memory: Memory,
                                                                browser, shot) -> None:  # type: ignore[no-untyped-def]
    # Low thresholds of its own: a few exchanges activate observations and the Reflector
    # rewrites them (as in tests/e2e/test_memory_threads_api.py).
    thread, resource = f"gen-{_tag()}", f"gen-user-{_tag()}"
    api = memory.api
    api.post("/threads", json={"id": thread, "resource_id": resource})
    api.patch(f"/threads/{thread}/observations/config", json={"observation_tokens": 100, "reflection_tokens": 100})
    facts = [f"My friend number {i} is called {name} and lives in {city} where she teaches mathematics at school."
             for i, (name, city) in enumerate([("Ada", "Oslo"), ("Bea", "Lyon"), ("Cleo", "Turin"), ("Dora", "Porto"),
                                               ("Eva", "Ghent"), ("Fay", "Cork"), ("Gia", "Bern"), ("Hana", "Graz")])]
    messages = [m for i, fact in enumerate(facts) for m in (
        {"role": "user", "content": fact, "created_at": f"2024-{i + 1:02d}-01T10:00:00Z"},
        {"role": "assistant", "content": "Noted.", "created_at": f"2024-{i + 1:02d}-01T10:00:05Z"},
        {"role": "user", "content": f"Again: {fact}", "created_at": f"2024-{i + 1:02d}-01T11:00:00Z"},
        {"role": "assistant", "content": "Noted again.", "created_at": f"2024-{i + 1:02d}-01T11:00:05Z"})]
    assert api.post(f"/threads/{thread}/messages", json={"messages": messages}).status_code == 201
    wait_for(lambda: any(g["generation"] >= 1 and g["current"]
                         for g in api.get(f"/threads/{thread}/observations/history").json()["data"]), timeout=30)
    with ThreadPoolExecutor(1) as aside:  # (its asyncio.run cannot run beside Playwright's loop)
        aside.submit(observer_idle, gateway).result()
    stored = {o["id"]: o for o in api.get(f"/threads/{thread}/observations").json()["data"]}

    page = sign_in(browser, gateway, memory.key)
    page.goto(f"{gateway.url}/dashboard/threads/{thread}")
    generations = page.locator("[data-testid=generation]")
    numbers = [int(g.get_attribute("data-generation")) for g in generations.all()]
    assert numbers == sorted(numbers, reverse=True) and numbers[-1] == 0 and numbers[0] >= 1  # newest first
    newest = generations.first
    assert "condensed by the Reflector" in newest.inner_text() and "current" in newest.inner_text()
    assert "observed from messages" in generations.last.inner_text()
    assert "superseded" in generations.last.inner_text()
    shown = page.locator("[data-testid=generation-observation]")
    assert shown.count() == len(stored)  # every observation, superseded ones too

    # Each reflected observation names what it replaced (linked to them on the page) and its source messages.
    reflected = [o for o in stored.values() if o["generation"] == numbers[0]]
    assert reflected and all(o["derived_from"] for o in reflected)
    message_ids = {m["id"] for m in api.get(f"/threads/{thread}/messages", params={"limit": 200}).json()["data"]}
    for o in reflected:
        box = page.locator(f"#obs-{o['id']}")
        assert o["text"] in box.inner_text()
        replaced = box.locator("[data-testid=replaced] a")
        assert [a.get_attribute("href") for a in replaced.all()] == [f"#obs-{i}" for i in o["derived_from"]]
        for old in o["derived_from"]:
            assert stored[old]["superseded_at"] is not None
            assert stored[old]["text"] in page.locator(f"#obs-{old}").inner_text()
        sources = [a.get_attribute("href")[1:] for a in box.locator("[data-testid=source-message]").all()]
        assert sources == o["source_message_ids"] and set(sources) <= message_ids
        assert all(page.locator(f"[id='{s}'][data-testid=message]").count() == 1 for s in sources)
    shot(page, "thread-generations")  # (test_dashboard.py saves "thread": a thread without reflection)


def _sure_to_delete(page: Any, button: str) -> None:
    """Click the page's delete button, look at the confirmation, cancel, and then confirm."""
    start = page.url
    page.click(f"[data-testid={button}]")
    page.wait_for_url("**/delete")
    assert "cannot be undone" in page.inner_text("[data-testid=confirm-delete]")
    page.click("[data-testid=cancel]")
    page.wait_for_url(start)
    page.click(f"[data-testid={button}]")
    page.wait_for_url("**/delete")
    page.click("[data-testid=confirm]")


def test_delete_a_thread_and_a_resource_after_confirming(gateway: GatewayProcess, memory: Memory, browser) -> None:  # type: ignore[no-untyped-def]
    resource = f"doomed-user-{_tag()}"
    doomed, kept = f"doomed-{_tag()}", f"kept-{_tag()}"
    _remember(gateway, memory, doomed, resource, "My secret code word is Marmalade.")
    _remember(gateway, memory, kept, resource, "My favourite mountain is Kilimanjaro.")

    page = sign_in(browser, gateway, memory.key)
    page.goto(f"{gateway.url}/dashboard/threads/{doomed}")
    _sure_to_delete(page, "delete-thread")
    _at(page, "/dashboard/threads", deleted_thread=doomed)
    assert doomed in page.inner_text("[data-testid=done]")
    assert doomed not in _rows(page) and kept in _rows(page)
    assert memory.api.get(f"/threads/{doomed}").status_code == 404
    assert not any(h["thread_id"] == doomed for h in _searched(memory.api, resource, "secret code word Marmalade"))
    assert any(h["thread_id"] == kept for h in _searched(memory.api, resource, "favourite mountain Kilimanjaro"))
    gone = page.goto(f"{gateway.url}/dashboard/threads/{doomed}")
    assert gone is not None and gone.status == 404

    page.goto(f"{gateway.url}/dashboard/resources/{resource}")
    _sure_to_delete(page, "delete-resource")
    _at(page, "/dashboard/threads", deleted_resource=resource)
    assert resource in page.inner_text("[data-testid=done]")
    assert memory.api.get(f"/threads/{kept}").status_code == 404
    assert memory.api.get("/threads", params={"resource_id": resource}).json()["total"] == 0
    assert _searched(memory.api, resource, "favourite mountain Kilimanjaro") == []
    gone = page.goto(f"{gateway.url}/dashboard/resources/{resource}")
    assert gone is not None and gone.status == 404


def test_another_tenant_sees_none_of_it(gateway: GatewayProcess, memory: Memory, browser) -> None:  # type: ignore[no-untyped-def]
    page = _other(browser, gateway, memory)
    ours = (memory.chatted, memory.titled, memory.chatted_resource, memory.bulk_resource)
    for path in ("/dashboard/threads", f"/dashboard/threads?q={memory.chatted}",
                 f"/dashboard/threads?resource_id={memory.chatted_resource}", "/dashboard/search?q=Kim+Acme",
                 f"/dashboard/search?q=Kim&resource_id={memory.chatted_resource}"):
        page.goto(gateway.url + path)
        assert page.locator("[data-testid=thread-row], [data-testid=search-result]").count() == 0, path
        shown = page.inner_text("main")
        assert not any(name in shown for name in ours if name not in path), path
        assert "Acme" not in shown
    for path in (f"/dashboard/threads/{memory.chatted}", f"/dashboard/threads/{memory.chatted}/delete",
                 f"/dashboard/resources/{memory.chatted_resource}", f"/dashboard/resources/{memory.chatted_resource}/delete",
                 f"/dashboard/search?q=Kim&thread_id={memory.chatted}"):
        answer = page.goto(gateway.url + path)
        assert answer is not None and answer.status == 404, path
        assert "Kim" not in page.inner_text("main") and "Acme" not in page.inner_text("main")

    # Its delete forms, posted from its own dashboard pages, find nothing of ours.
    for path in (f"/dashboard/threads/{memory.chatted}/delete", f"/dashboard/resources/{memory.chatted_resource}/delete"):
        answer = page.request.post(gateway.url + path, headers={"Sec-Fetch-Site": "same-origin"}, max_redirects=0)
        assert answer.status == 404, path
    assert memory.api.get(f"/threads/{memory.chatted}").status_code == 200
    assert memory.api.get("/threads", params={"resource_id": memory.chatted_resource}).json()["total"] == 2


def _signed_in(gateway: GatewayProcess, key: str) -> httpx.Client:
    client = httpx.Client(base_url=gateway.url)
    assert client.post("/dashboard/login", data={"api_key": key}).status_code == 303
    return client


def test_a_cross_site_post_of_a_delete_form_deletes_nothing(gateway: GatewayProcess, memory: Memory, browser,
                                                           tmp_path) -> None:  # type: ignore[no-untyped-def]
    for path in (f"/dashboard/threads/{memory.chatted}/delete", f"/dashboard/resources/{memory.chatted_resource}/delete"):
        signed_out = httpx.post(gateway.url + path)  # (no session: sent to sign in)
        assert (signed_out.status_code, signed_out.headers["location"]) == (303, "/dashboard/login")
    dashboard = _signed_in(gateway, memory.key)  # (the session cookie goes along: only the guard refuses)
    targets = (f"/dashboard/threads/{memory.chatted}/delete", f"/dashboard/resources/{memory.chatted_resource}/delete")
    for path in targets:
        for headers in ({"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"},
                        {"Origin": "http://attacker.example"}):
            answer = dashboard.post(path, headers=headers)
            assert answer.status_code == 403, (path, headers)
            assert answer.json()["error"]["code"] == "cross_site_request"
    assert memory.api.get(f"/threads/{memory.chatted}").status_code == 200
    assert memory.api.get("/threads", params={"resource_id": memory.chatted_resource}).json()["total"] == 2

    # And from a page on another site (localhost is not the same site as 127.0.0.1) in the
    # browser of a signed-in visitor.
    (tmp_path / "index.html").write_text(
        f'<form method="post" action="{gateway.url}{targets[0]}"></form><script>document.forms[0].submit()</script>')
    site = ThreadingHTTPServer(("127.0.0.1", 0), partial(SimpleHTTPRequestHandler, directory=str(tmp_path)))
    threading.Thread(target=site.serve_forever, daemon=True).start()
    page = sign_in(browser, gateway, memory.key)
    try:
        with page.expect_response(f"{gateway.url}{targets[0]}") as answer:
            page.goto(f"http://localhost:{site.server_port}/index.html")
        assert answer.value.status == 403
    finally:
        site.shutdown()
    assert memory.api.get(f"/threads/{memory.chatted}").status_code == 200
    # (and a same-origin post works: the refusals above were the guard's, not a broken form)
    spare = f"spare-{_tag()}"
    assert memory.api.post("/threads", json={"id": spare, "resource_id": f"spare-user-{_tag()}"}).status_code == 201
    assert dashboard.post(f"/dashboard/threads/{spare}/delete", headers={"Sec-Fetch-Site": "same-origin"}).status_code == 303
    assert memory.api.get(f"/threads/{spare}").status_code == 404
