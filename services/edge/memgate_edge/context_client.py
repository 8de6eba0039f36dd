"""Asking the context service for the memory block, within a small time budget.

Two ways to ask, one answer: over NATS request/reply (any number of context replicas,
the split and Kubernetes shapes), or by a direct call when the context service runs in
this very process (`memgate up`), which saves the hop and the block's encoding.

Memory never breaks chat: on timeout or failure the request goes on without memory and
the response says memory was degraded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import msgspec
from opentelemetry import trace

from memgate_bus import Bus, inject_headers
from memgate_bus.subjects import CONTEXT_LOOKUP_SUBJECT
from memgate_core.context import ContextBlock, ContextFailure, ContextLookup, block_decoder, lookup_encoder
from memgate_telemetry.metrics import CONTEXT_LOOKUP, MEMORY_DEGRADED

tracer = trace.get_tracer("memgate.edge")
log = logging.getLogger("memgate.edge.context")

LocalLookup = Callable[[ContextLookup], Awaitable[ContextBlock]]


class ContextResult(msgspec.Struct):
    block: ContextBlock | None
    degraded_reason: str | None
    elapsed_ms: float


class ContextClient:
    def __init__(self, bus: Bus, *, timeout_ms: int, local: LocalLookup | None = None) -> None:
        """`local`: the in-process context service's lookup; without it, lookups go over NATS."""
        self.bus = bus
        self.timeout = timeout_ms / 1000
        self.local = local

    async def lookup(self, q: ContextLookup) -> ContextResult:
        started = time.perf_counter()
        with tracer.start_as_current_span("context.request", kind=trace.SpanKind.CLIENT) as span:
            reason = None
            block = None
            try:
                answer = await (self._call(q) if self.local is not None else self._request(q))
                if isinstance(answer, ContextFailure):
                    reason = "context_error"
                else:
                    block = answer
            except TimeoutError:
                reason = "context_timeout"
            except Exception as exc:
                reason = "context_unavailable" if "NoResponders" in type(exc).__name__ else "context_error"
                if reason == "context_error":
                    log.warning("context lookup failed: %s: %s", type(exc).__name__, exc)
            elapsed = time.perf_counter() - started
            CONTEXT_LOOKUP.observe(elapsed)
            if reason:
                MEMORY_DEGRADED.labels(reason).inc()
                span.set_attribute("memgate.degraded", reason)
            return ContextResult(block, reason, elapsed * 1000)

    async def _request(self, q: ContextLookup) -> ContextBlock | ContextFailure:
        reply = await self.bus.nc.request(
            CONTEXT_LOOKUP_SUBJECT, lookup_encoder.encode(q), timeout=self.timeout, headers=inject_headers()
        )
        return block_decoder.decode(reply.data)

    async def _call(self, q: ContextLookup) -> ContextBlock:
        assert self.local is not None
        async with asyncio.timeout(self.timeout):
            return await self.local(q)
