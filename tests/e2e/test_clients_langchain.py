"""LangChain's `ChatOpenAI` (langchain-openai) against `memgate up`, memory headers as default_headers."""

from __future__ import annotations

import uuid

import pytest
from helpers import assert_memory_reached_provider
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_openai import ChatOpenAI

from memgate_testing.fake_provider import FakeProvider
from memgate_testing.gateway import GatewayProcess

QUESTION = "What is my name?"


def _chat(gateway: GatewayProcess, thread: str, resource: str) -> ChatOpenAI:
    return ChatOpenAI(
        model="fake/gpt-test", base_url=gateway.base_url, api_key=gateway.api_key, max_retries=0, timeout=30,
        default_headers={"x-thread-id": thread, "x-resource-id": resource},
    )


def test_invoke_remembers(gateway: GatewayProcess, provider: FakeProvider) -> None:
    tag = uuid.uuid4().hex[:10]
    llm = _chat(gateway, f"lc-invoke-{tag}", f"user-{tag}")
    statement = "My name is Gunnar and I drink tea."

    first = llm.invoke(statement)
    assert isinstance(first, AIMessage) and first.content == f"fake answer to: {statement}"
    second = llm.invoke(QUESTION)
    assert second.content == "Your name is Gunnar."
    assert second.response_metadata["finish_reason"] == "stop"
    assert second.usage_metadata is not None and second.usage_metadata["total_tokens"] > 0
    assert_memory_reached_provider(provider.requests, statement, QUESTION, stream=False)


def test_stream_remembers(gateway: GatewayProcess, provider: FakeProvider) -> None:
    tag = uuid.uuid4().hex[:10]
    llm = _chat(gateway, f"lc-stream-{tag}", f"user-{tag}")
    statement = "My name is Hedda and I run marathons."

    first = "".join(str(chunk.content) for chunk in llm.stream(statement))
    assert first == f"fake answer to: {statement}"
    chunks = list(llm.stream(QUESTION))
    assert all(isinstance(c, AIMessageChunk) for c in chunks)
    assert len([c for c in chunks if c.content]) > 1  # relayed chunk by chunk
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged = merged + chunk
    assert merged.content == "Your name is Hedda."
    assert merged.response_metadata.get("finish_reason") == "stop"
    assert_memory_reached_provider(provider.requests, statement, QUESTION, stream=True)


@pytest.mark.asyncio
async def test_ainvoke_and_astream_remember(gateway: GatewayProcess, provider: FakeProvider) -> None:
    tag = uuid.uuid4().hex[:10]
    llm = _chat(gateway, f"lc-async-{tag}", f"user-{tag}")
    statement = "My name is Ilse and I grow tomatoes."

    first = await llm.ainvoke(statement)
    assert first.content == f"fake answer to: {statement}"
    pieces = [str(chunk.content) async for chunk in llm.astream(QUESTION)]
    assert "".join(pieces) == "Your name is Ilse."
    assert_memory_reached_provider(provider.requests, statement, QUESTION, stream=True)
