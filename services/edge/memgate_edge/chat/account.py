"""One chat request's account: its usage row and its entry in the request log (the
dashboard's Logs), with the memory block it was given and why."""

from __future__ import annotations

import time
from typing import Any

from opentelemetry import trace

from memgate_core.context import ContextBlock
from memgate_core.events import Usage
from memgate_core.ids import new_id
from memgate_edge.auth import Principal
from memgate_edge.chat.request import ChatRequest, MemoryScope
from memgate_edge.context_client import ContextResult
from memgate_edge.usage import UsageRecorder
from memgate_providers.registry import Route
from memgate_store.usage import InjectedMemory, RecalledItem, UsageRecord
from memgate_telemetry import genai
from memgate_telemetry.metrics import count_chat_request

CLIENT_CLOSED = 499  # (the status a request gets in the log when its client went away first)


class RequestAccount:
    """Filled in as the request goes, and written once (buffered: `UsageRecorder`) by
    `record()`, whatever the outcome: answered, failed upstream, or refused before any
    provider was asked."""

    def __init__(self, usage: UsageRecorder, principal: Principal, span: trace.Span, *, keep_block: bool) -> None:
        self.usage = usage
        self.principal = principal
        self.span = span
        self.keep_block = keep_block
        self.started = time.perf_counter()
        self.request_id = new_id("req")
        self.request: ChatRequest | None = None  # once parsed
        self.route: Route | None = None  # the route asked (then the one that answered)
        self.keyed_providers: set[str] = set()  # the providers the caller's (or its tenant's) own keys are for
        self.memory: ContextResult | None = None  # the memory lookup's, once done
        self.recorded = False

    def record(self, route: Route | None, status: int, usage: Usage | None, first_byte_at: float | None = None) -> None:
        """`route`: the one that answered (or failed); None: the one known so far, if any."""
        if self.recorded:
            return
        self.recorded = True
        route = route or self.route
        request, now = self.request, time.perf_counter()
        provider = route.provider if route else ""
        stream, scope = (request.stream, request.memory) if request else (False, None)
        self.usage.record(UsageRecord(
            tenant=self.principal.tenant, key_id=self.principal.key_id, model=request.model if request else "",
            provider=provider, status=status, stream=stream, memory=scope is not None,
            input_tokens=usage.prompt_tokens if usage else 0, output_tokens=usage.completion_tokens if usage else 0,
            latency_ms=(now - self.started) * 1000, route_model=route.model if route else "",
            # (a fallback to a provider the tenant has no key for went out with memgate's: not BYOK)
            byok=route is not None and route.provider in self.keyed_providers,
            request_id=self.request_id, trace_id=trace_id(self.span),
            ttft_ms=(first_byte_at - self.started) * 1000 if first_byte_at is not None else None,
            **request_memory(scope, self.memory, keep_block=self.keep_block),
        ))
        count_chat_request(provider or "none", status, stream=stream, memory=scope is not None, seconds=now - self.started)
        if usage is not None:
            genai.set_usage(self.span, usage.prompt_tokens, usage.completion_tokens)


def trace_id(span: trace.Span) -> str | None:
    """The request's trace id (None when no tracing is set up)."""
    context = span.get_span_context()
    return f"{context.trace_id:032x}" if context.is_valid else None


def request_memory(memory: MemoryScope | None, result: ContextResult | None, *,
                   keep_block: bool) -> dict[str, Any]:
    """The request log's memory fields of one request: its thread, what it was given, and why."""
    if memory is None:
        return {}
    fields: dict[str, Any] = {"thread_id": memory.thread_id, "resource_id": memory.resource_id}
    if result is None:  # (refused before its lookup)
        return fields
    block = result.block
    fields.update(lookup_ms=round(result.elapsed_ms, 3), memory_tokens=block.tokens if block else 0,
                  memory_degraded=None if block else result.degraded_reason or "unknown")
    if block is not None and block.text and keep_block:
        fields["injected"] = injected_memory(block, memory.thread_id)
    return fields


def injected_memory(block: ContextBlock, thread_id: str) -> InjectedMemory:
    """The block with the reason each item is in it: the thread's own (counted), and what
    recall added, from which thread with what score (one by one)."""
    return InjectedMemory(block.text, len(block.thread_observations), len(block.recent_messages), [
        *(RecalledItem("observation", o.id, o.thread_id, o.score) for o in block.related_observations),
        *(RecalledItem("message", m.id, m.thread_id or thread_id, m.score) for m in block.recalled_messages),
    ])
