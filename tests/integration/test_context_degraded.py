"""Memory never breaks chat: a missing or slow context service degrades within the budget."""

from __future__ import annotations

import asyncio
import time

import pytest

from memgate_bus import Bus
from memgate_bus.subjects import CONTEXT_LOOKUP_SUBJECT
from memgate_core.context import ContextBlock, ContextLookup, lookup_encoder
from memgate_edge.context_client import ContextClient

LOOKUP = ContextLookup("default", "res", "thread", "hello", 1000)


@pytest.mark.asyncio
async def test_no_context_service(nats_server) -> None:  # type: ignore[no-untyped-def]
    bus = await Bus.connect(nats_server.url, name="test-degraded")
    started = time.perf_counter()
    result = await ContextClient(bus, timeout_ms=200).lookup(LOOKUP)
    waited = time.perf_counter() - started
    assert result.block is None
    assert result.degraded_reason in ("context_unavailable", "context_timeout")
    assert waited < 2  # answered at once or at the 200 ms budget, never waited longer (by the wall clock)
    assert abs(result.elapsed_ms / 1000 - waited) < 0.5  # and says how long it took
    await bus.close()


@pytest.mark.asyncio
async def test_slow_context_service_times_out_within_budget(nats_server) -> None:  # type: ignore[no-untyped-def]
    bus = await Bus.connect(nats_server.url, name="test-slow")

    async def slow(msg) -> None:  # type: ignore[no-untyped-def]
        await asyncio.sleep(5.0)
        await msg.respond(lookup_encoder.encode(ContextBlock([], [], [], "", 0)))

    await bus.nc.subscribe(CONTEXT_LOOKUP_SUBJECT, cb=slow)
    started = time.perf_counter()
    result = await ContextClient(bus, timeout_ms=150).lookup(LOOKUP)
    assert result.block is None and result.degraded_reason == "context_timeout"
    assert time.perf_counter() - started < 3  # the 150 ms budget, not the 5 s answer
    await bus.close()


@pytest.mark.asyncio
async def test_answering_context_service(nats_server) -> None:  # type: ignore[no-untyped-def]
    bus = await Bus.connect(nats_server.url, name="test-ok")

    async def answer(msg) -> None:  # type: ignore[no-untyped-def]
        await msg.respond(lookup_encoder.encode(ContextBlock([], [], [], "<memgate_memory>x</memgate_memory>", 5)))

    await bus.nc.subscribe(CONTEXT_LOOKUP_SUBJECT, cb=answer)
    result = await ContextClient(bus, timeout_ms=500).lookup(LOOKUP)
    assert result.degraded_reason is None and result.block is not None and result.block.tokens == 5
    await bus.close()
