"""Provider failures seen through the gateway: status mapping, OpenAI-shaped errors, timeouts,
unreachable providers, and fallbacks along a configured chain (before any byte was streamed).

A failed request never leaves anything in memory.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from memgate_testing.fake_provider import FakeProvider
from memgate_testing.gateway import GatewayProcess, free_port

FAKE_FAILURE = "The fake provider was told to fail with status {status}."
FIRST_BYTE_TIMEOUT = 2.0  # short for the tests, but no stall of a loaded machine reaches it


# --------------------------------------------------------------------------- fixtures


class _RateLimitedHandler(BaseHTTPRequestHandler):
    """A provider that always answers 429 with a Retry-After header (the fake sends none)."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        body = json.dumps({"error": {"message": "Slow down, you are over your quota.", "type": "rate_limit_error",
                                     "param": None, "code": "rate_limit_exceeded"}}).encode()
        self.send_response(429)
        self.send_header("content-type", "application/json")
        self.send_header("retry-after", "17")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def rate_limited_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _RateLimitedHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def backup_provider() -> Iterator[FakeProvider]:
    with FakeProvider() as fake:
        yield fake


@pytest.fixture()
def backup(backup_provider: FakeProvider) -> FakeProvider:
    backup_provider.reset()
    return backup_provider


@pytest.fixture(scope="module")
def routed(tmp_path_factory: pytest.TempPathFactory, fake_provider: FakeProvider, backup_provider: FakeProvider,
           rate_limited_url: str) -> Iterator[GatewayProcess]:
    """A gateway of its own: a short first-byte timeout, a provider that is down, one that is
    rate-limited, and the alias `fast` = fake/primary falling back to backup/secondary."""
    root = tmp_path_factory.mktemp("routed")
    config = root / "memgate.toml"
    config.write_text(
        '[aliases]\n'
        'fast = "fake/primary"\n'
        'limited-first = "limited/x"\n'
        '\n'
        '[fallbacks]\n'
        'fast = ["backup/secondary"]\n'
        'limited-first = ["backup/secondary"]\n'
    )
    env = {
        "MEMGATE_CONFIG": str(config),
        "MEMGATE_TIMEOUT_FIRST_BYTE": str(FIRST_BYTE_TIMEOUT),
        "MEMGATE_PROVIDER_DOWN_BASE_URL": f"http://127.0.0.1:{free_port()}/v1",  # nothing listens there
        "MEMGATE_PROVIDER_BACKUP_BASE_URL": backup_provider.base_url,
        "MEMGATE_PROVIDER_BACKUP_API_KEY": "backup-provider-key",
        "MEMGATE_PROVIDER_LIMITED_BASE_URL": rate_limited_url,
    }
    process = GatewayProcess(root / "data", provider_url=fake_provider.base_url, env=env)
    process.start()
    yield process
    process.stop()


# --------------------------------------------------------------------------- helpers


def _ids(prefix: str) -> dict[str, str]:
    return {"x-thread-id": f"{prefix}-{uuid.uuid4().hex[:8]}", "x-resource-id": f"res-{uuid.uuid4().hex[:6]}"}


def _chat(gateway: GatewayProcess, model: str = "fake/gpt-test", headers: dict[str, str] | None = None,
          content: str = "My name is Ursula and I keep bees.", **extra: Any) -> httpx.Response:
    return httpx.post(f"{gateway.base_url}/chat/completions", headers={**gateway.headers(), **(headers or {})},
                      json={"model": model, "messages": [{"role": "user", "content": content}], **extra}, timeout=30)


def _error(response: httpx.Response, status: int, error_type: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["type"] == error_type
    assert isinstance(error["message"], str) and error["message"]
    return error


def _assert_nothing_remembered(gateway: GatewayProcess, ids: dict[str, str]) -> None:
    """The thread may exist (it is bound before the provider is called), but holds no message,
    and its resource's next request gets no memory."""
    thread = ids["x-thread-id"]
    messages = httpx.get(f"{gateway.base_url}/memory/threads/{thread}/messages", headers=gateway.headers())
    if messages.status_code != 404:
        assert messages.status_code == 200, messages.text
        assert messages.json()["data"] == []
    found = httpx.get(f"{gateway.base_url}/memory/threads/{thread}", headers=gateway.headers())
    if found.status_code != 404:
        assert (found.json()["message_count"], found.json()["observation_count"]) == (0, 0)


# --------------------------------------------------------------------------- status mapping (shared gateway)


def test_provider_503_is_a_502_naming_the_provider(gateway: GatewayProcess, provider: FakeProvider) -> None:
    provider.set_behavior(fail_status=503)
    ids = _ids("f503")
    error = _error(_chat(gateway, headers=ids), 502, "server_error")
    assert "fake" in error["message"]
    assert FAKE_FAILURE.format(status=503) in error["message"]
    assert len(provider.requests) == 1  # a request that may have reached the provider is never repeated
    provider.set_behavior(fail_status=None)
    _assert_nothing_remembered(gateway, ids)
    # The next, healthy, request of that thread finds no memory of the failed one.
    ok = _chat(gateway, headers=ids, content="What is my name?")
    assert ok.status_code == 200 and ok.headers["x-memory"] == "empty"
    assert "Ursula" not in json.dumps(provider.requests[-1]["body"])


def test_provider_503_through_openai_sdk(gateway: GatewayProcess, provider: FakeProvider) -> None:
    provider.set_behavior(fail_status=503)
    client = openai.OpenAI(base_url=gateway.base_url, api_key=gateway.api_key, max_retries=0)
    with pytest.raises(openai.APIStatusError) as raised:
        client.chat.completions.create(model="fake/gpt-test", messages=[{"role": "user", "content": "hi"}])
    assert raised.value.status_code == 502
    assert "fake" in raised.value.message


def test_provider_429_is_passed_on(gateway: GatewayProcess, provider: FakeProvider) -> None:
    provider.set_behavior(fail_status=429)
    ids = _ids("f429")
    response = _chat(gateway, headers=ids)
    error = _error(response, 429, "rate_limit_error")
    assert FAKE_FAILURE.format(status=429) in error["message"]
    assert "retry-after" not in response.headers  # the fake sent none; memgate must not invent one
    assert len(provider.requests) == 1
    _assert_nothing_remembered(gateway, ids)


def test_provider_400_is_passed_on_with_its_message(gateway: GatewayProcess, provider: FakeProvider) -> None:
    provider.set_behavior(fail_status=400)
    ids = _ids("f400")
    error = _error(_chat(gateway, headers=ids), 400, "invalid_request_error")
    assert FAKE_FAILURE.format(status=400) in error["message"]
    assert error["code"] == "fake_failure"
    assert len(provider.requests) == 1
    _assert_nothing_remembered(gateway, ids)


def test_streaming_request_failing_upstream_gets_a_json_error(gateway: GatewayProcess, provider: FakeProvider) -> None:
    provider.set_behavior(fail_status=503)
    ids = _ids("fstream")
    with httpx.stream("POST", f"{gateway.base_url}/chat/completions", headers={**gateway.headers(), **ids},
                      json={"model": "fake/gpt-test", "stream": True,
                            "messages": [{"role": "user", "content": "My name is Ursula."}]}, timeout=30) as response:
        response.read()
    error = _error(response, 502, "server_error")
    assert "fake" in error["message"]
    _assert_nothing_remembered(gateway, ids)


def test_a_stream_whose_last_event_lacks_its_blank_line_still_ends_whole(gateway: GatewayProcess,
                                                                        provider: FakeProvider) -> None:
    """The upstream's `data: [DONE]` ends the stream without its blank line: it is still the
    end, held back until the exchange is recorded, and translated for the Messages API."""
    provider.set_behavior(unterminated_end=True, reply="Unterminated but whole.")
    ids = _ids("unterminated")
    with httpx.stream("POST", f"{gateway.base_url}/chat/completions", headers={**gateway.headers(), **ids},
                      json={"model": "fake/gpt-test", "stream": True,
                            "messages": [{"role": "user", "content": "Say something."}]}, timeout=30) as response:
        raw = response.read()
    assert response.status_code == 200 and raw.endswith(b"data: [DONE]\n\n"), raw[-200:]
    stored = httpx.get(f"{gateway.base_url}/memory/threads/{ids['x-thread-id']}/messages", headers=gateway.headers(),
                       timeout=10).json()["data"]
    assert [(m["role"], m["content"]) for m in stored] == [("user", "Say something."),
                                                           ("assistant", "Unterminated but whole.")]
    with httpx.stream("POST", f"{gateway.base_url}/messages", headers=gateway.headers(), timeout=30, json={
            "model": "fake/gpt-test", "max_tokens": 50, "stream": True,
            "messages": [{"role": "user", "content": "Say something."}]}) as response:
        raw = response.read()
    assert raw.rstrip().endswith(b'"type":"message_stop"}') and b"[DONE]" not in raw, raw[-300:]


# --------------------------------------------------------------------------- timeouts, unreachable, Retry-After


def test_slow_provider_is_a_504(routed: GatewayProcess, provider: FakeProvider) -> None:
    provider.set_behavior(delay_ms=30_000)
    ids = _ids("slow")
    response = _chat(routed, headers=ids)
    error = _error(response, 504, "upstream_error")
    assert error["code"] == "upstream_timeout"
    assert "fake" in error["message"]
    assert response.elapsed.total_seconds() < 15  # did not wait for the provider's answer
    assert len(provider.requests) == 1  # a request that reached the provider is not sent again
    _assert_nothing_remembered(routed, ids)


def test_unreachable_provider_is_a_502(routed: GatewayProcess) -> None:
    ids = _ids("down")
    error = _error(_chat(routed, model="down/x", headers=ids), 502, "upstream_error")
    assert "'down'" in error["message"] and "unreachable" in error["message"]
    _assert_nothing_remembered(routed, ids)


def test_rate_limit_retry_after_is_passed_on(routed: GatewayProcess) -> None:
    response = _chat(routed, model="limited/x")
    error = _error(response, 429, "rate_limit_error")
    assert "Slow down, you are over your quota." in error["message"]
    assert error["code"] == "rate_limit_exceeded"
    assert response.headers["retry-after"] == "17"


# --------------------------------------------------------------------------- fallbacks


def test_healthy_primary_answers(routed: GatewayProcess, provider: FakeProvider, backup: FakeProvider) -> None:
    response = _chat(routed, model="fast", headers=_ids("fb-ok"))
    assert response.status_code == 200, response.text
    assert response.headers["x-memgate-route"] == "fake/primary"
    assert response.json()["model"] == "primary"
    assert [r["body"]["model"] for r in provider.requests] == ["primary"]
    assert backup.requests == []


@pytest.mark.parametrize("fail_status", [503, 500, 429])
def test_failing_primary_falls_back(routed: GatewayProcess, provider: FakeProvider, backup: FakeProvider,
                                    fail_status: int) -> None:
    provider.set_behavior(fail_status=fail_status)
    backup.set_behavior(reply="Answer from the backup.")
    ids = _ids("fb")
    response = _chat(routed, model="fast", headers=ids)
    assert response.status_code == 200, response.text
    assert response.headers["x-memgate-route"] == "backup/secondary"
    answer = response.json()
    assert answer["model"] == "secondary"
    assert answer["choices"][0]["message"]["content"] == "Answer from the backup."
    assert [r["body"]["model"] for r in provider.requests] == ["primary"]
    assert len(backup.requests) == 1
    sent = backup.requests[0]
    assert sent["body"]["model"] == "secondary"
    assert sent["api_key"] == "backup-provider-key"  # the backup's own key, not the primary's
    assert sent["body"]["messages"] == [{"role": "user", "content": "My name is Ursula and I keep bees."}]
    # The exchange that succeeded through the fallback is remembered.
    messages = httpx.get(f"{routed.base_url}/memory/threads/{ids['x-thread-id']}/messages",
                         headers=routed.headers()).json()["data"]
    assert [(m["role"], m["content"]) for m in messages] == [
        ("user", "My name is Ursula and I keep bees."), ("assistant", "Answer from the backup.")]


def test_slow_primary_falls_back(routed: GatewayProcess, provider: FakeProvider, backup: FakeProvider) -> None:
    provider.set_behavior(delay_ms=30_000)  # far past the first-byte timeout
    response = _chat(routed, model="fast", headers=_ids("fb-slow"))
    assert response.status_code == 200, response.text
    assert response.headers["x-memgate-route"] == "backup/secondary"
    assert backup.requests[0]["body"]["model"] == "secondary"


def test_rate_limited_primary_falls_back(routed: GatewayProcess, backup: FakeProvider) -> None:
    response = _chat(routed, model="limited-first")
    assert response.status_code == 200, response.text
    assert response.headers["x-memgate-route"] == "backup/secondary"
    assert "retry-after" not in response.headers


def test_client_error_does_not_fall_back(routed: GatewayProcess, provider: FakeProvider, backup: FakeProvider) -> None:
    provider.set_behavior(fail_status=400)
    error = _error(_chat(routed, model="fast", headers=_ids("fb-400")), 400, "invalid_request_error")
    assert FAKE_FAILURE.format(status=400) in error["message"]
    assert backup.requests == []


def test_every_route_failing_gives_the_last_error(routed: GatewayProcess, provider: FakeProvider,
                                                  backup: FakeProvider) -> None:
    provider.set_behavior(fail_status=503)
    backup.set_behavior(fail_status=500)
    ids = _ids("fb-all")
    response = _chat(routed, model="fast", headers=ids)
    error = _error(response, 502, "server_error")
    assert "'backup'" in error["message"] and FAKE_FAILURE.format(status=500) in error["message"]
    assert "x-memgate-route" not in response.headers
    assert (len(provider.requests), len(backup.requests)) == (1, 1)
    _assert_nothing_remembered(routed, ids)


def test_streaming_falls_back_before_any_byte(routed: GatewayProcess, provider: FakeProvider,
                                              backup: FakeProvider) -> None:
    provider.set_behavior(fail_status=503)
    backup.set_behavior(reply="Streamed by the backup.")
    ids = _ids("fb-stream")
    client = openai.OpenAI(base_url=routed.base_url, api_key=routed.api_key, max_retries=0)
    with client.chat.completions.with_streaming_response.create(
        model="fast", stream=True, extra_headers=ids,
        messages=[{"role": "user", "content": "My name is Ursula and I keep bees."}],
    ) as raw:
        assert raw.headers["x-memgate-route"] == "backup/secondary"
        chunks = list(raw.parse())
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Streamed by the backup."
    assert {c.model for c in chunks} == {"secondary"}
    assert backup.requests[0]["body"]["model"] == "secondary"
    assert backup.requests[0]["body"]["stream"] is True
    assert len(provider.requests) == 1
    messages = httpx.get(f"{routed.base_url}/memory/threads/{ids['x-thread-id']}/messages",
                         headers=routed.headers()).json()["data"]
    assert [m["content"] for m in messages] == ["My name is Ursula and I keep bees.", "Streamed by the backup."]


def test_streaming_healthy_primary(routed: GatewayProcess, provider: FakeProvider, backup: FakeProvider) -> None:
    with httpx.stream("POST", f"{routed.base_url}/chat/completions", headers=routed.headers(),
                      json={"model": "fast", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
                      timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["x-memgate-route"] == "fake/primary"
        body = response.read()
    assert body.endswith(b"data: [DONE]\n\n")
    assert backup.requests == []


def test_failed_fallback_chain_in_a_stream_stores_nothing(routed: GatewayProcess, provider: FakeProvider,
                                                          backup: FakeProvider) -> None:
    provider.set_behavior(fail_status=503)
    backup.set_behavior(fail_status=503)
    ids = _ids("fb-stream-fail")
    with httpx.stream("POST", f"{routed.base_url}/chat/completions", headers={**routed.headers(), **ids},
                      json={"model": "fast", "stream": True,
                            "messages": [{"role": "user", "content": "My name is Ursula."}]}, timeout=30) as response:
        response.read()
    _error(response, 502, "server_error")
    _assert_nothing_remembered(routed, ids)


def test_config_file_is_the_one_in_use(routed: GatewayProcess) -> None:
    models = httpx.get(f"{routed.base_url}/models", headers=routed.headers()).json()["data"]
    assert {"fast", "limited-first"} <= {m["id"] for m in models}
    assert Path(routed.env["MEMGATE_CONFIG"]).exists()
