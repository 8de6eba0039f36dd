"""The chat request's whole path: validate → context → inject → provider → record, the same
for every API a chat comes in by (`memgate_edge.chat.api`)."""

from __future__ import annotations

import asyncio
import time
from functools import partial
from typing import Any

from litestar import Response
from litestar.response import Stream
from opentelemetry import trace

from memgate_core.context import ContextBlock, ContextLookup
from memgate_core.errors import GatewayError, InvalidRequest, UpstreamError, UpstreamTimeout
from memgate_core.events import Usage
from memgate_core.ids import new_id
from memgate_edge.auth import Principal
from memgate_edge.bindings import ThreadBindings
from memgate_edge.chat.api import CHAT_COMPLETIONS, Api
from memgate_edge.chat.exchange import ExchangeRecorder, PendingExchange
from memgate_edge.chat.request import ChatRequest, MemoryScope, client_fingerprints, latest_user_text
from memgate_edge.chat.streaming import relay
from memgate_edge.context_client import ContextClient, ContextResult
from memgate_edge.usage import UsageRecord, UsageRecorder
from memgate_providers import ProviderClient, http
from memgate_providers.registry import Route
from memgate_store.provider_keys import ProviderKeyRepository
from memgate_store.tenant_settings import TenantSettingsRepository
from memgate_store.usage import InjectedMemory, RecalledItem
from memgate_telemetry import genai
from memgate_telemetry.metrics import count_chat_request

tracer = trace.get_tracer("memgate.edge")


class ChatService:
    def __init__(
        self, providers: ProviderClient, bindings: ThreadBindings, contexts: ContextClient,
        recorder: ExchangeRecorder, usage: UsageRecorder, tenant_settings: TenantSettingsRepository,
        provider_keys: ProviderKeyRepository, *, budget_tokens: int, related_budget_tokens: int | None = None,
        keep_blocks: bool = True,
    ) -> None:
        self.providers = providers
        self.usage = usage
        self.bindings = bindings
        self.contexts = contexts
        self.recorder = recorder
        self.tenant_settings = tenant_settings  # its memory budgets (the gateway's: `budget_tokens`...)
        self.provider_keys = provider_keys  # its saved provider keys (BYOK)
        self.budget_tokens = budget_tokens
        self.related_budget_tokens = related_budget_tokens
        self.keep_blocks = keep_blocks  # the request log keeps each injected block

    async def complete(self, raw: bytes, headers: dict[str, str], principal: Principal,
                       api: Api = CHAT_COMPLETIONS) -> Response[Any]:
        # One trace per chat request. A streamed answer outlives this call, so the span is
        # ended by the relay once the exchange is recorded (and published, with the trace).
        span = tracer.start_span(api.name, kind=trace.SpanKind.SERVER)
        account = RequestAccount(self.usage, principal, span, keep_block=self.keep_blocks)
        try:
            with trace.use_span(span, end_on_exit=False, record_exception=True, set_status_on_exception=True):
                response = await self._complete(raw, headers, principal, api, span, account)
        except GatewayError as exc:
            if not account.recorded:  # refused before a provider was asked (bad input, a thread's resource...)
                account.record(None, exc.status, None)
            span.end()
            raise
        except BaseException:
            span.end()
            raise
        if not isinstance(response, Stream):
            span.end()
        return response

    async def _complete(
        self, raw: bytes, headers: dict[str, str], principal: Principal, api: Api, span: trace.Span,
        account: RequestAccount,
    ) -> Response[Any]:
        span.set_attribute("memgate.tenant", principal.tenant)
        request = account.request = api.parse(raw, headers)
        registry = self.providers.registry
        _, route = registry.route(request.model)  # unknown provider or alias: 400 before any work
        genai.set_request(span, operation=genai.CHAT, provider=route.provider, model=route.model)
        # The caller's own provider key, else the one its tenant saved (BYOK either way).
        provider_key = principal.provider_key or (await self.provider_keys.for_tenant(principal.tenant)).get(route.provider)
        account.byok = provider_key is not None
        if not provider_key and not registry.is_configured(request.model):
            provider = registry.providers[route.provider]
            raise InvalidRequest(
                f"Provider '{route.provider}' has no API key: set {provider.spec.key_env} (or "
                f"MEMGATE_PROVIDER_{route.provider.upper()}_API_KEY), or send your own key with "
                "X-Memory-Gateway-Authorization.", code="provider_not_configured", param="model",
            )
        span.set_attribute("memgate.stream", request.stream)

        memory_headers: dict[str, str] = {"x-memory": "off"}
        memory = ""  # the block, when there is one
        if request.memory is not None:
            genai.set_thread(span, request.memory.thread_id)
            await self.bindings.check(principal.tenant, request.memory.thread_id, request.memory.resource_id)
            budget = await self.tenant_settings.memory_budget(
                principal.tenant, budget_tokens=self.budget_tokens, related_budget_tokens=self.related_budget_tokens)
            result = account.memory = await self.contexts.lookup(ContextLookup(
                tenant=principal.tenant, resource_id=request.memory.resource_id,
                thread_id=request.memory.thread_id, query=latest_user_text(request.messages),
                budget_tokens=request.memory.budget_tokens or budget.budget_tokens,
                client_messages=client_fingerprints(request.messages),
                related_budget_tokens=budget.related_budget_tokens,
            ))
            memory_headers = _memory_headers(result)
            _trace_memory(span, result, memory_headers["x-memory"])
            if result.block is not None:
                memory = result.block.text

        deadline = time.monotonic() + self.providers.timeouts.total

        try:
            # Aliases and fallbacks are resolved here: `answered` is the route that took the request.
            upstream, answered, native = await api.open(self.providers, request, memory, api_key=provider_key)
        except GatewayError as exc:
            genai.set_error(span, str(exc.status))
            account.record(route, exc.status, None)
            raise
        try:
            span.set_attribute("memgate.provider", answered.provider)
            span.set_attribute(genai.MEMGATE_ROUTE, answered.name)
            if answered != route:  # a fallback answered: the span is about the call that did
                genai.set_request(span, operation=genai.CHAT, provider=answered.provider, model=answered.model)
            headers = {**memory_headers, "x-memgate-route": answered.name, "x-request-id": account.request_id}
            pending = PendingExchange.begin(request, principal, answered.provider) if request.memory else None
            if request.stream:
                on_done = partial(account.record, answered, 200)
                events = relay(upstream, pending, self.recorder, span, deadline=deadline, on_done=on_done,
                               form=api.stream(request, native=native))
                return Stream(events, media_type="text/event-stream", headers={**headers, "cache-control": "no-cache"})
        except BaseException:
            self.recorder.close_in_background(upstream)  # an open upstream left behind keeps generating
            raise
        try:
            async with asyncio.timeout(max(deadline - time.monotonic(), 0.001)):
                raw_answer = await upstream.aread()
        except (TimeoutError, http.TimeoutException):
            account.record(answered, 504, None)
            raise UpstreamTimeout(f"Upstream provider '{answered.provider}' did not finish its answer in time "
                                  f"(MEMGATE_TIMEOUT_FIRST_BYTE / MEMGATE_TIMEOUT_TOTAL).") from None
        except http.HTTPError as exc:
            account.record(answered, 502, None)
            raise UpstreamError(f"Upstream provider '{answered.provider}' broke off its answer "
                                f"({type(exc).__name__}).") from None
        finally:
            await upstream.aclose()
        answer = api.answer(raw_answer, request, native=native,
                            media_type=upstream.headers.get("content-type", "application/json"))
        if pending is not None:
            await self.recorder.finish(pending, answer.text, answer.usage)
        account.record(answered, 200, answer.usage)
        return Response(answer.body, media_type=answer.media_type, headers=headers)


class RequestAccount:
    """One chat request's row in the usage table and the request log, filled in as the
    request goes and written (buffered: `UsageRecorder`) once, by `record()`, whatever the
    outcome: answered, failed upstream, or refused before any provider was asked."""

    def __init__(self, usage: UsageRecorder, principal: Principal, span: trace.Span, *, keep_block: bool) -> None:
        self.usage = usage
        self.principal = principal
        self.span = span
        self.keep_block = keep_block
        self.started = time.perf_counter()
        self.request_id = new_id("req")
        self.request: ChatRequest | None = None  # once parsed
        self.byok = False  # the caller's own provider key, or its tenant's
        self.memory: ContextResult | None = None  # the memory lookup's, once done
        self.recorded = False

    def record(self, route: Route | None, status: int, usage: Usage | None, first_byte_at: float | None = None) -> None:
        """`route`: the one that answered (or failed); None when no provider was asked."""
        if self.recorded:
            return
        self.recorded = True
        request, now = self.request, time.perf_counter()
        provider = route.provider if route else ""
        stream, scope = (request.stream, request.memory) if request else (False, None)
        self.usage.record(UsageRecord(
            tenant=self.principal.tenant, key_id=self.principal.key_id, model=request.model if request else "",
            provider=provider, status=status, stream=stream, memory=scope is not None,
            input_tokens=usage.prompt_tokens if usage else 0, output_tokens=usage.completion_tokens if usage else 0,
            latency_ms=(now - self.started) * 1000, route_model=route.model if route else "", byok=self.byok,
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
    if result is None:  # (failed before its lookup)
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


def _trace_memory(span: trace.Span, result: ContextResult, state: str) -> None:
    block = result.block
    genai.set_memory(span, state=state, lookup_ms=result.elapsed_ms, degraded_reason=result.degraded_reason,
                     tokens=block.tokens if block else 0, observations=block.observation_count if block else 0,
                     messages=len(block.recent_messages) + len(block.recalled_messages) if block else 0)


def _memory_headers(result: ContextResult) -> dict[str, str]:
    headers = {"x-memory-lookup-ms": f"{result.elapsed_ms:.2f}"}
    if result.block is None:
        headers.update({"x-memory": "degraded", "x-memory-degraded": "true",
                        "x-memory-degraded-reason": result.degraded_reason or "unknown",
                        "x-memory-observations": "0", "x-memory-messages": "0", "x-memory-tokens": "0"})
        return headers
    block = result.block
    headers.update({
        "x-memory": "injected" if block.text else "empty",
        "x-memory-degraded": "false",
        "x-memory-observations": str(block.observation_count),
        "x-memory-messages": str(len(block.recent_messages) + len(block.recalled_messages)),
        "x-memory-tokens": str(block.tokens),
        "x-memory-skipped-messages": str(block.skipped_messages),
    })
    return headers
