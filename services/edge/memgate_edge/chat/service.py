"""The chat request's whole path: validate → context → inject → provider → record, the same
for every API a chat comes in by (`memgate_edge.chat.api`)."""

from __future__ import annotations

import asyncio
import logging
import time
from functools import partial
from typing import Any

from litestar import Response
from litestar.response import Stream
from opentelemetry import trace

from memgate_core.context import ContextLookup
from memgate_core.errors import GatewayError, InvalidRequest, ServiceUnavailable, UpstreamError, UpstreamTimeout
from memgate_edge.auth import Principal
from memgate_edge.bindings import ThreadBindings
from memgate_edge.chat.account import CLIENT_CLOSED, RequestAccount
from memgate_edge.chat.api import CHAT_COMPLETIONS, Api
from memgate_edge.chat.exchange import ExchangeRecorder, PendingExchange
from memgate_edge.chat.request import client_fingerprints, latest_user_text
from memgate_edge.chat.streaming import relay
from memgate_edge.context_client import ContextClient, ContextResult
from memgate_edge.errors import RateLimitedLog
from memgate_edge.usage import UsageRecorder
from memgate_providers import ProviderClient, http
from memgate_providers.registry import key_settings
from memgate_store import unreachable
from memgate_store.provider_keys import ProviderKeyRepository
from memgate_store.tenant_settings import TenantSettingsRepository
from memgate_telemetry import genai

log = logging.getLogger("memgate.edge.chat")
SAVED_KEYS_TIMEOUT = 1.0  # seconds a request with its own provider key waits for its tenant's saved ones
_keys_log = RateLimitedLog(every=10.0)

tracer = trace.get_tracer("memgate.edge")


class ChatService:
    def __init__(
        self, providers: ProviderClient, bindings: ThreadBindings, contexts: ContextClient,
        recorder: ExchangeRecorder, usage: UsageRecorder, tenant_settings: TenantSettingsRepository,
        provider_keys: ProviderKeyRepository, *, budget_tokens: int, related_budget_tokens: int | None,
        keep_blocks: bool,
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
            # (refused before a provider was asked — bad input, a thread of another resource —
            # or after it answered: the exchange could not be stored)
            account.record(None, exc.status, None)
            exc.headers.setdefault("x-request-id", account.request_id)
            span.end()
            raise
        except BaseException as exc:  # (what the error handler will answer: a 503 for an outage, else a 500)
            status = CLIENT_CLOSED if isinstance(exc, asyncio.CancelledError) else 503 if unreachable(exc) else 500
            account.record(None, status, None)
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
        # The keys its tenant saved, by provider, and the caller's own for the model's provider
        # (BYOK either way): each route of the chain, fallbacks too, goes out with its provider's.
        if principal.provider_key:
            try:  # (only for fallbacks: Postgres away or slow, the caller's own key still answers)
                async with asyncio.timeout(SAVED_KEYS_TIMEOUT):
                    keys = await self.provider_keys.for_tenant(principal.tenant)
            except Exception as exc:
                if _keys_log.allow():
                    log.warning("saved provider keys could not be read (fallbacks use memgate's keys): %r%s",
                                exc, _keys_log.suppressed_note())
                keys = {}
            keys[route.provider] = principal.provider_key
        else:
            keys = await self.provider_keys.for_tenant(principal.tenant)
        if route.provider in keys and keys[route.provider] is None:  # (never the gateway's own key in its place)
            raise ServiceUnavailable(
                f"The key this tenant saved for provider '{route.provider}' cannot be read by memgate (was its "
                "secret key changed?): save it again on the dashboard's Settings page, or send your own key "
                "with X-Memory-Gateway-Authorization.", code="provider_key_unreadable")
        account.route, account.keyed_providers = route, {provider for provider, key in keys.items() if key}
        if not registry.is_configured(request.model, keys):
            raise InvalidRequest(
                f"Provider '{route.provider}' has no API key: set "
                f"{key_settings(route.provider, registry.providers[route.provider].spec)}, or send your own key "
                "with X-Memory-Gateway-Authorization.", code="provider_not_configured", param="model",
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
            upstream, answered, native = await api.open(self.providers, request, memory, api_keys=keys)
        except GatewayError as exc:
            genai.set_error(span, str(exc.status))
            account.record(route, exc.status, None)
            raise
        account.route = answered
        try:
            span.set_attribute("memgate.provider", answered.provider)
            span.set_attribute(genai.MEMGATE_ROUTE, answered.name)
            if answered != route:  # a fallback answered: the span is about the call that did
                genai.set_request(span, operation=genai.CHAT, provider=answered.provider, model=answered.model)
            headers = {**memory_headers, "x-memgate-route": answered.name, "x-request-id": account.request_id}
            pending = PendingExchange.begin(request, principal, answered.provider) if request.memory else None
            if request.stream:
                on_done = partial(account.record, answered)
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
        try:
            if pending is not None:
                await self.recorder.finish(pending, answer.text, answer.usage)
        except GatewayError as exc:  # (answered, but not stored: the client gets the error, the row the tokens)
            account.record(answered, exc.status, answer.usage)
            raise
        account.record(answered, 200, answer.usage)
        return Response(answer.body, media_type=answer.media_type, headers=headers)


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
