"""One model call of memgate's own agents (Observer, Reflector, titles), traced and counted.

Each call is a GenAI `chat` client span (`chat {model}`, `gen_ai.*` attributes), a child of
the observer's span for the batch, so a chat's trace shows what observing it asked of the
model. Its tokens and cost go to `memgate_tokens_total` / `memgate_cost_usd_total` with
the agent as `source`.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import trace

from memgate_core.errors import GatewayError
from memgate_providers import ProviderClient
from memgate_providers.client import Completion
from memgate_providers.prices import cost_usd
from memgate_telemetry import genai
from memgate_telemetry.metrics import count_usage

tracer = trace.get_tracer("memgate.observer")


async def ask(client: ProviderClient, model: str, messages: list[dict[str, Any]], *, agent: str,
              thread_id: str | None = None, **params: Any) -> str:
    """The model's answer to `messages`; provider errors propagate (recorded on the span)."""
    _, primary = client.registry.route(model)
    with tracer.start_as_current_span(genai.span_name(genai.CHAT, primary.model), kind=trace.SpanKind.CLIENT) as span:
        genai.set_request(span, operation=genai.CHAT, provider=primary.provider, model=primary.model,
                          max_tokens=params.get("max_tokens"), temperature=params.get("temperature"), rename=False)
        span.set_attribute(genai.MEMGATE_AGENT, agent)
        if thread_id is not None:
            genai.set_thread(span, thread_id)
        try:
            completion = await client.complete(model, messages, **params)
        except GatewayError as exc:
            # The provider's HTTP status where it answered, else memgate's (504: timed out...)
            genai.set_error(span, str(getattr(exc, "upstream_status", None) or exc.status))
            raise
        except Exception as exc:
            genai.set_error(span, type(exc).__name__)
            raise
        _record(span, completion, agent)
        return completion.text


def _record(span: trace.Span, completion: Completion, agent: str) -> None:
    route = completion.route
    span.set_attribute(genai.MEMGATE_ROUTE, route.name)
    # A fallback answered: the span is about the call that gave the answer.
    genai.set_request(span, operation=genai.CHAT, provider=route.provider, model=route.model)
    genai.set_response(span, model=completion.model, response_id=completion.response_id,
                       finish_reasons=[completion.finish_reason] if completion.finish_reason else None)
    genai.set_usage(span, completion.input_tokens, completion.output_tokens)
    tokens_in, tokens_out = completion.input_tokens or 0, completion.output_tokens or 0
    count_usage(route.provider, tokens_in, tokens_out,
                cost_usd=cost_usd(route.provider, route.model, tokens_in, tokens_out), source=agent)
