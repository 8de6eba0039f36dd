"""Whatever bytes and headers arrive, the edge answers in the OpenAI error shape, never 500,
and a rejected request publishes nothing and reaches no provider."""

from __future__ import annotations

import asyncio
import string

import httpx
import msgspec
import nats
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memgate_bus.subjects import EXCHANGE_STREAM
from memgate_testing.fake_provider import FakeProvider
from memgate_testing.gateway import GatewayProcess

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
messages = st.lists(
    st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "assistant", "tool", 3, None])},
                          optional={"content": json_values}),
    max_size=3,
) | json_values
bodies = st.fixed_dictionaries(
    {}, optional={"model": st.sampled_from(["fake/x", "nope/x", "", 7, None, "fake/"]) | st.text(max_size=10),
                  "messages": messages, "stream": json_scalars, "temperature": json_values},
).map(lambda d: msgspec.json.encode(d)) | st.binary(max_size=64)
id_chars = string.ascii_letters + string.digits + "._:@-/ \t+é"
# Only values an HTTP client can send at all (no surrounding white space).
header_values = st.none() | st.text(alphabet=id_chars, max_size=140).filter(lambda v: v == v.strip())


async def _last_seq(url: str) -> int:
    nc = await nats.connect(url)
    info = await nc.jetstream().stream_info(EXCHANGE_STREAM)
    await nc.close()
    return info.state.last_seq


@pytest.fixture(scope="module")
def http(gateway: GatewayProcess) -> httpx.Client:
    with httpx.Client(base_url=gateway.base_url, timeout=30) as client:
        yield client


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=bodies, thread=header_values, resource=header_values, auth=st.booleans())
def test_no_500_and_nothing_stored_on_rejection(gateway: GatewayProcess, fake_provider: FakeProvider,
                                                http: httpx.Client, body: bytes, thread: str | None,
                                                resource: str | None, auth: bool) -> None:
    headers = [("content-type", "application/json")]
    if auth:
        headers.append(("authorization", f"Bearer {gateway.api_key}"))
    if thread is not None:
        headers.append(("x-thread-id", thread.encode("utf-8")))
    if resource is not None:
        headers.append(("x-resource-id", resource.encode("utf-8")))
    nats_url = gateway.runtime()["nats_url"]
    # An accepted example publishes its exchange after its response: wait until that is done
    # (the memory API settles the tenant's recordings first), so it is not counted against this one.
    http.get("/memory/resources", headers=gateway.headers()).raise_for_status()
    before_seq = asyncio.run(_last_seq(nats_url))
    before_calls = len(fake_provider.requests)

    response = http.post("/chat/completions", content=body, headers=headers)

    assert response.status_code != 500, response.text
    if response.status_code >= 400:
        error = response.json()["error"]
        assert isinstance(error["message"], str) and error["message"]
        assert error["type"] in {"invalid_request_error", "authentication_error", "not_found"}
        assert asyncio.run(_last_seq(nats_url)) == before_seq, "a rejected request published an event"
        assert len(fake_provider.requests) == before_calls, "a rejected request reached the provider"


def test_oversize_body_is_413(gateway: GatewayProcess, provider: FakeProvider) -> None:
    big = b'{"model": "fake/x", "messages": [{"role": "user", "content": "' + b"a" * (5 * 1024 * 1024) + b'"}]}'
    response = httpx.post(f"{gateway.base_url}/chat/completions", content=big, timeout=30,
                          headers={**gateway.headers(), "content-type": "application/json"})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    assert provider.requests == []


def test_unknown_route_and_method(gateway: GatewayProcess) -> None:
    missing = httpx.get(f"{gateway.base_url}/nothing-here", headers=gateway.headers())
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found"
    wrong = httpx.get(f"{gateway.base_url}/chat/completions", headers=gateway.headers())
    assert wrong.status_code == 405 and wrong.json()["error"]["type"] == "invalid_request_error"
