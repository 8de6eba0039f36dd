"""The GenAI span helpers and the tracing setup's rules (which exporter, which service name)."""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import INVALID_SPAN

from memgate_telemetry import genai
from memgate_telemetry.metrics import TOKENS, count_usage
from memgate_telemetry.tracing import otlp_endpoint, service_name


def _tracer() -> tuple[InMemorySpanExporter, TracerProvider]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter, provider


def test_a_model_call_span_after_the_conventions() -> None:
    exporter, provider = _tracer()
    with provider.get_tracer("t").start_as_current_span("chat.completions") as span:
        genai.set_request(span, operation=genai.CHAT, provider="google", model="gemini-2.5-flash", temperature=0.0)
        genai.set_thread(span, "thread-1")
        genai.set_response(span, model="gemini-2.5-flash-001", response_id="r1", finish_reasons=["stop"])
        genai.set_usage(span, 12, None)
        genai.set_memory(span, state="degraded", lookup_ms=301.23456, degraded_reason="context_timeout")
    [finished] = exporter.get_finished_spans()
    assert finished.name == "chat gemini-2.5-flash"
    assert dict(finished.attributes or {}) == {
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "gcp.gemini",
        "gen_ai.request.model": "gemini-2.5-flash", "gen_ai.request.temperature": 0.0,
        "memgate.thread_id": "thread-1", "gen_ai.conversation.id": "thread-1",
        "gen_ai.response.model": "gemini-2.5-flash-001", "gen_ai.response.id": "r1",
        "gen_ai.response.finish_reasons": ("stop",), "gen_ai.usage.input_tokens": 12,
        "memgate.memory": "degraded", "memgate.memory.degraded": True,
        "memgate.memory.degraded_reason": "context_timeout", "memgate.memory.lookup_ms": 301.235,
        "memgate.memory.tokens": 0, "memgate.memory.observations": 0, "memgate.memory.messages": 0,
    }


def test_provider_names() -> None:
    assert [genai.provider_name(p) for p in ("openai", "anthropic", "google", "mistral", "xai", "openrouter",
                                               "my-vllm")] == [
        "openai", "anthropic", "gcp.gemini", "mistral_ai", "x_ai", "openrouter", "my-vllm"]


def test_nothing_is_done_without_a_recording_span() -> None:
    genai.set_request(INVALID_SPAN, operation="chat", provider="openai", model="m")  # (no error, no work)
    genai.set_memory(INVALID_SPAN, state="empty", lookup_ms=1.0)


def test_where_spans_go_and_under_which_name() -> None:
    assert otlp_endpoint({}) is None
    assert otlp_endpoint({"OTEL_EXPORTER_OTLP_ENDPOINT": "  "}) is None
    assert otlp_endpoint({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}) == "http://c:4318"
    assert otlp_endpoint({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
                          "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t:4318/v1/traces"}) == "http://t:4318/v1/traces"
    assert service_name("memgate-edge", {}) == "memgate-edge"
    assert service_name("memgate-edge", {"OTEL_SERVICE_NAME": "gw-eu"}) == "gw-eu"


def test_usage_counts_never_go_down() -> None:
    def tokens(direction: str) -> float:
        return TOKENS.labels("test", "p", direction)._value.get()

    before = [tokens(d) for d in ("input", "output", "memory")]
    count_usage("p", 10, -3, 4, cost_usd=None, source="test")  # a provider's odd usage: ignored, no error
    assert [tokens(d) for d in ("input", "output", "memory")] == [before[0] + 10, before[1], before[2] + 4]
