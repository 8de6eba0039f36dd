"""Cross-thread recall with a provider's embeddings endpoint instead of the local model."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import openai
from helpers import observations, wait_for

from memgate_testing.fake_provider import FakeProvider
from memgate_testing.gateway import GatewayProcess


def test_recall_across_threads_with_provider_embeddings(make_gateway: Callable[..., GatewayProcess],
                                                        provider: FakeProvider) -> None:
    gateway = make_gateway(env={"MEMGATE_EMBEDDING_MODEL": "fake/embed-small", "MEMGATE_OBSERVER_MODEL": "local"})
    gateway.start()
    probes = [r for r in provider.requests if r["path"] == "/v1/embeddings"]
    assert probes and probes[0]["body"]["model"] == "embed-small"  # the start-up dimension probe

    client = openai.OpenAI(base_url=gateway.base_url, api_key=gateway.api_key, max_retries=0)
    resource = f"user-{uuid.uuid4().hex[:6]}"
    first = {"x-thread-id": f"tea-{uuid.uuid4().hex[:6]}", "x-resource-id": resource}
    client.chat.completions.create(model="fake/chat", extra_headers=first,
                                   messages=[{"role": "user", "content": "My favourite tea is smoky lapsang souchong."}])
    wait_for(lambda: observations(gateway, first["x-thread-id"]), timeout=15)
    indexed = [r for r in provider.requests if r["path"] == "/v1/embeddings" and r is not probes[0]]
    assert any("lapsang" in text for r in indexed for text in r["body"]["input"])

    provider.reset()
    second = {"x-thread-id": f"other-{uuid.uuid4().hex[:6]}", "x-resource-id": resource}
    client.chat.completions.create(model="fake/chat", extra_headers=second,
                                   messages=[{"role": "user", "content": "Which tea is my favourite tea?"}])
    paths = [r["path"] for r in provider.requests]
    chat = provider.requests[paths.index("/v1/chat/completions")]
    block = chat["body"]["messages"][0]["content"]
    assert "lapsang souchong" in block and "## Recalled from memory" in block
    # The query was embedded remotely, before the chat went upstream (not only the exchange's
    # indexing afterwards).
    asked = [i for i, r in enumerate(provider.requests) if r["path"] == "/v1/embeddings"
             and "Which tea is my favourite tea?" in r["body"]["input"]]
    assert asked and asked[0] < paths.index("/v1/chat/completions")


def test_an_index_built_with_another_model_is_refused(make_gateway: Callable[..., GatewayProcess]) -> None:
    local = make_gateway().start()
    data_dir = local.data_dir
    local.stop()
    remote = make_gateway(data_dir, env={"MEMGATE_EMBEDDING_MODEL": "fake/embed-small"})
    try:
        remote.start(timeout=60)
        raise AssertionError("a 384-dim index must not open with a 64-dim embedding model")
    except RuntimeError as exc:
        assert "vector index cannot be opened" in str(exc)
