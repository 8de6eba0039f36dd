"""Span attributes after the OpenTelemetry GenAI semantic conventions, plus memgate's memory ones.

A model call is a span named `{gen_ai.operation.name} {gen_ai.request.model}` (e.g.
`chat gpt-4o-mini`) carrying `gen_ai.operation.name`, `gen_ai.provider.name`,
`gen_ai.request.model`, and once answered `gen_ai.response.model`, `gen_ai.response.id`,
`gen_ai.response.finish_reasons`, `gen_ai.usage.input_tokens` / `output_tokens` (the
conventions are at "Development" status; these names are the ones of semconv 1.37+).
Message content is never recorded (the conventions make it opt-in; memgate keeps it in
Postgres, not in traces).

memgate's own attributes say what memory did for a request (`memgate.memory.*`) and which
thread it was about (`memgate.thread_id`, also given as `gen_ai.conversation.id`).
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.trace import Span

# --------------------------------------------------------------------------- names

GEN_AI_OPERATION_NAME = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
GEN_AI_REQUEST_TEMPERATURE = "gen_ai.request.temperature"
GEN_AI_RESPONSE_MODEL = "gen_ai.response.model"
GEN_AI_RESPONSE_ID = "gen_ai.response.id"
GEN_AI_RESPONSE_FINISH_REASONS = "gen_ai.response.finish_reasons"
GEN_AI_USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
GEN_AI_CONVERSATION_ID = "gen_ai.conversation.id"
ERROR_TYPE = "error.type"

CHAT = "chat"  # the operation of every chat API memgate serves (chat completions, Responses, Messages)

MEMGATE_THREAD_ID = "memgate.thread_id"
MEMGATE_ROUTE = "memgate.route"  # provider/model that answered, after aliases and fallbacks
MEMGATE_AGENT = "memgate.agent"  # which of memgate's own agents called a model: observer | reflector | title
MEMGATE_MEMORY = "memgate.memory"  # off | empty | injected | degraded (the x-memory header)
MEMGATE_MEMORY_TOKENS = "memgate.memory.tokens"  # tokens of the injected memory block
MEMGATE_MEMORY_OBSERVATIONS = "memgate.memory.observations"
MEMGATE_MEMORY_MESSAGES = "memgate.memory.messages"
MEMGATE_MEMORY_DEGRADED = "memgate.memory.degraded"
MEMGATE_MEMORY_DEGRADED_REASON = "memgate.memory.degraded_reason"
MEMGATE_MEMORY_LOOKUP_MS = "memgate.memory.lookup_ms"

# memgate's provider names → the conventions' well-known `gen_ai.provider.name` values;
# any other provider (OpenRouter, Ollama, a custom one) is reported by its memgate name.
_PROVIDER_NAMES = {
    "openai": "openai",
    "anthropic": "anthropic",
    "google": "gcp.gemini",
    "gemini": "gcp.gemini",
    "mistral": "mistral_ai",
    "xai": "x_ai",
    "deepseek": "deepseek",
    "groq": "groq",
}


def provider_name(provider: str) -> str:
    """The `gen_ai.provider.name` of a memgate provider (`google` → `gcp.gemini`)."""
    return _PROVIDER_NAMES.get(provider, provider)


def span_name(operation: str, model: str) -> str:
    """`{gen_ai.operation.name} {gen_ai.request.model}`, e.g. `chat gpt-4o-mini`."""
    return f"{operation} {model}" if model else operation


# --------------------------------------------------------------------------- setting them


def set_request(span: Span, *, operation: str, provider: str, model: str, conversation_id: str | None = None,
                max_tokens: int | None = None, temperature: float | None = None, rename: bool = True) -> None:
    """What is asked of which model. `provider` is memgate's name (mapped here), `model` the
    name the provider is asked for (without memgate's `provider/` prefix). Renames the
    span after the conventions unless `rename=False`. Call again once a fallback answered."""
    if not span.is_recording():  # (no tracing set up, or the span has ended)
        return
    span.set_attribute(GEN_AI_OPERATION_NAME, operation)
    span.set_attribute(GEN_AI_PROVIDER_NAME, provider_name(provider))
    span.set_attribute(GEN_AI_REQUEST_MODEL, model)
    if conversation_id is not None:
        span.set_attribute(GEN_AI_CONVERSATION_ID, conversation_id)
    if max_tokens is not None:
        span.set_attribute(GEN_AI_REQUEST_MAX_TOKENS, max_tokens)
    if temperature is not None:
        span.set_attribute(GEN_AI_REQUEST_TEMPERATURE, temperature)
    if rename:
        span.update_name(span_name(operation, model))


def set_response(span: Span, *, model: str | None = None, response_id: str | None = None,
                 finish_reasons: Sequence[str] | None = None) -> None:
    """What the provider said about its answer (each only when it said it)."""
    if not span.is_recording():  # (no tracing set up, or the span has ended)
        return
    if model:
        span.set_attribute(GEN_AI_RESPONSE_MODEL, model)
    if response_id:
        span.set_attribute(GEN_AI_RESPONSE_ID, response_id)
    if finish_reasons:
        span.set_attribute(GEN_AI_RESPONSE_FINISH_REASONS, list(finish_reasons))


def set_usage(span: Span, input_tokens: int | None, output_tokens: int | None) -> None:
    """Tokens the provider reported (None: it reported none; nothing is set then)."""
    if not span.is_recording():  # (no tracing set up, or the span has ended)
        return
    if input_tokens is not None:
        span.set_attribute(GEN_AI_USAGE_INPUT_TOKENS, input_tokens)
    if output_tokens is not None:
        span.set_attribute(GEN_AI_USAGE_OUTPUT_TOKENS, output_tokens)


def set_error(span: Span, error_type: str) -> None:
    """A low-cardinality name of what went wrong: an HTTP status ("502"), an error code, a class name."""
    if not span.is_recording():  # (no tracing set up, or the span has ended)
        return
    span.set_attribute(ERROR_TYPE, error_type)


def set_thread(span: Span, thread_id: str) -> None:
    """The memory thread a request is about: memgate's attribute and the conventions' conversation id."""
    if not span.is_recording():  # (no tracing set up, or the span has ended)
        return
    span.set_attribute(MEMGATE_THREAD_ID, thread_id)
    span.set_attribute(GEN_AI_CONVERSATION_ID, thread_id)


def set_memory(span: Span, *, state: str, lookup_ms: float, tokens: int = 0, observations: int = 0,
               messages: int = 0, degraded_reason: str | None = None) -> None:
    """What memory did for one request: `state` as in the `x-memory` header (`empty`,
    `injected`, `degraded`), the injected block's size, and how long the lookup took."""
    if not span.is_recording():  # (no tracing set up, or the span has ended)
        return
    span.set_attribute(MEMGATE_MEMORY, state)
    span.set_attribute(MEMGATE_MEMORY_DEGRADED, degraded_reason is not None)
    if degraded_reason is not None:
        span.set_attribute(MEMGATE_MEMORY_DEGRADED_REASON, degraded_reason)
    span.set_attribute(MEMGATE_MEMORY_LOOKUP_MS, round(lookup_ms, 3))
    span.set_attribute(MEMGATE_MEMORY_TOKENS, tokens)
    span.set_attribute(MEMGATE_MEMORY_OBSERVATIONS, observations)
    span.set_attribute(MEMGATE_MEMORY_MESSAGES, messages)
