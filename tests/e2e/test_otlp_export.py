"""Traces over OTLP/HTTP to a real receiver: one chat's trace, followed into the observer's work.

The receiver is an HTTP server in this test that takes `POST /v1/traces` with protobuf
bodies, as an OpenTelemetry Collector does on port 4318, and decodes them with
opentelemetry-proto's `ExportTraceServiceRequest`. The gateway is a `memgate up` with only
OTEL_EXPORTER_OTLP_ENDPOINT set (no traces file) and the LLM Observer (the fake provider),
so the trace holds the observer's own model call as a GenAI `chat` client span.
"""

from __future__ import annotations

import gzip
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from helpers import observations, wait_for
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as SpanProto
from prometheus_client.parser import text_string_to_metric_families

from memgate_testing.fake_provider import FakeProvider
from memgate_testing.gateway import GatewayProcess

SERVICE = "memgate-otlp-test"
OBSERVER_REPLY = ("## 2024-05-01\n- [high] 09:15 User's favourite colour is teal. {M1}\n"
                  "Current task: Sharing preferences.")
KINDS = {SpanProto.SPAN_KIND_SERVER: "SERVER", SpanProto.SPAN_KIND_CLIENT: "CLIENT",
         SpanProto.SPAN_KIND_CONSUMER: "CONSUMER", SpanProto.SPAN_KIND_PRODUCER: "PRODUCER",
         SpanProto.SPAN_KIND_INTERNAL: "INTERNAL"}


@dataclass
class ReceivedSpan:
    service: str
    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    kind: str
    attributes: dict[str, Any] = field(default_factory=dict)


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    return getattr(value, kind) if kind else None


class OtlpReceiver:
    """A minimal OTLP/HTTP trace receiver on 127.0.0.1 (protobuf, gzip or not)."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self.requests = 0
        self.content_types: set[str] = set()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                if self.path != "/v1/traces":
                    self.send_error(404)
                    return
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                receiver.receive(request, self.headers.get("content-type", ""))
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def receive(self, request: ExportTraceServiceRequest, content_type: str) -> None:
        received = []
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    received.append(ReceivedSpan(
                        service=str(resource.get("service.name")), trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(), parent_id=span.parent_span_id.hex() or None, name=span.name,
                        kind=KINDS.get(span.kind, "UNSPECIFIED"),
                        attributes={a.key: _value(a.value) for a in span.attributes},
                    ))
        with self._lock:
            self.requests += 1
            self.content_types.add(content_type)
            self.spans.extend(received)

    def snapshot(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self.spans)

    def __enter__(self) -> OtlpReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as running:
        yield running


@pytest.fixture(scope="module")
def otlp_gateway(tmp_path_factory: pytest.TempPathFactory, fake_provider: FakeProvider,
                 receiver: OtlpReceiver) -> Iterator[GatewayProcess]:
    data_dir: Path = tmp_path_factory.mktemp("otlp") / "data"
    gateway = GatewayProcess(data_dir, provider_url=fake_provider.base_url, traces=False, env={
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_SERVICE_NAME": SERVICE,
        "OTEL_BSP_SCHEDULE_DELAY": "100",  # (ms) export soon after spans end
        "MEMGATE_OBSERVER_MODEL": "fake/observer-model",
        "MEMGATE_OBSERVER_DEBOUNCE_MS": "100",
    })
    gateway.start()
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def chat_trace(otlp_gateway: GatewayProcess, fake_provider: FakeProvider,
               receiver: OtlpReceiver) -> dict[str, Any]:
    """One chat with memory, and the spans of its trace once the observer's are in."""
    thread = f"otlp-{uuid.uuid4().hex[:6]}"
    fake_provider.reset()
    fake_provider.set_behavior(reply=OBSERVER_REPLY)  # answers the chat, and plays the Observer
    try:
        client = openai.OpenAI(base_url=otlp_gateway.base_url, api_key=otlp_gateway.api_key, max_retries=0)
        client.chat.completions.create(model="fake/gpt-test", extra_headers={"x-thread-id": thread,
                                                                             "x-resource-id": "otlp-user"},
                                       messages=[{"role": "user", "content": "My favourite colour is teal."}])
        wait_for(lambda: observations(otlp_gateway, thread), timeout=20)
    finally:
        fake_provider.reset()

    def edge_span() -> ReceivedSpan | None:
        return next((s for s in receiver.snapshot() if s.kind == "SERVER"
                     and s.attributes.get("memgate.thread_id") == thread), None)

    def whole_trace() -> list[ReceivedSpan] | None:
        root = edge_span()
        if root is None:
            return None
        spans = [s for s in receiver.snapshot() if s.trace_id == root.trace_id]
        agent_calls = [s for s in spans if s.attributes.get("memgate.agent") == "observer"]
        return spans if agent_calls and any(s.name == "observer.handle" for s in spans) else None

    spans = wait_for(whole_trace, timeout=20, interval=0.1)
    root = edge_span()
    assert root is not None
    return {"thread": thread, "root": root, "spans": spans}


def test_the_chat_trace_follows_into_the_observer(chat_trace: dict[str, Any], receiver: OtlpReceiver) -> None:
    root: ReceivedSpan = chat_trace["root"]
    spans: list[ReceivedSpan] = chat_trace["spans"]
    by_id = {s.span_id: s for s in spans}
    names = {s.name for s in spans}
    assert {"context.request", "exchange.publish", "observer.exchange", "observer.batch", "observer.handle",
            "observer.observe"} <= names
    assert root.parent_id is None and root.service == SERVICE  # OTEL_SERVICE_NAME is respected
    assert all(s.trace_id == root.trace_id for s in spans)
    assert receiver.content_types == {"application/x-protobuf"}  # OTLP/HTTP with protobuf bodies

    def ancestors(span: ReceivedSpan) -> list[str]:
        chain = []
        while span.parent_id is not None and span.parent_id in by_id:
            span = by_id[span.parent_id]
            chain.append(span.name)
        return chain

    # The observer's model call: a GenAI chat client span inside the observer's work, whose
    # chain of parents goes back through NATS to the chat's own span.
    [call] = [s for s in spans if s.attributes.get("memgate.agent") == "observer"]
    assert call.kind == "CLIENT" and call.name == "chat observer-model"
    assert ancestors(call)[:3] == ["observer.observe", "observer.handle", "observer.batch"]
    assert ancestors(call)[-1] == root.name and "exchange.publish" in ancestors(call)
    attrs = call.attributes
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.provider.name"] == "fake"
    assert attrs["gen_ai.request.model"] == "observer-model"
    assert attrs["gen_ai.response.model"] == "observer-model"
    assert attrs["gen_ai.response.finish_reasons"] == ["stop"]
    assert attrs["gen_ai.usage.input_tokens"] > 0 and attrs["gen_ai.usage.output_tokens"] > 0
    assert attrs["gen_ai.request.temperature"] == 0
    assert attrs["gen_ai.conversation.id"] == attrs["memgate.thread_id"] == chat_trace["thread"]
    # No message content goes into traces.
    assert not any("teal" in str(v) for s in spans for v in s.attributes.values())


def test_the_edge_chat_span_follows_the_genai_conventions(chat_trace: dict[str, Any]) -> None:
    """The edge's chat span: named `chat {model}`, with the gen_ai attributes of the upstream
    call and memgate's memory attributes (set in chat/service.py with memgate_telemetry.genai)."""
    root: ReceivedSpan = chat_trace["root"]
    attrs = root.attributes
    assert root.name == "chat gpt-test"
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.provider.name"] == "fake"
    assert attrs["gen_ai.request.model"] == "gpt-test"
    assert attrs["gen_ai.usage.input_tokens"] > 0 and attrs["gen_ai.usage.output_tokens"] > 0
    assert attrs["gen_ai.conversation.id"] == attrs["memgate.thread_id"] == chat_trace["thread"]
    assert attrs["memgate.route"] == "fake/gpt-test"
    assert attrs["memgate.memory"] in ("empty", "injected")
    assert attrs["memgate.memory.degraded"] is False
    assert attrs["memgate.memory.lookup_ms"] >= 0 and attrs["memgate.memory.tokens"] >= 0


def test_the_observer_model_calls_are_counted(chat_trace: dict[str, Any], otlp_gateway: GatewayProcess) -> None:
    """The same chat seen in /metrics: the observer's model call counted as its tokens."""
    page = httpx.get(f"{otlp_gateway.url}/metrics", timeout=10).text
    tokens = {(s.labels["source"], s.labels["direction"]): s.value
              for family in text_string_to_metric_families(page) if family.name == "memgate_tokens"
              for s in family.samples if s.name == "memgate_tokens_total" and s.labels["provider"] == "fake"}
    [call] = [s for s in chat_trace["spans"] if s.attributes.get("memgate.agent") == "observer"]
    assert tokens[("observer", "input")] >= call.attributes["gen_ai.usage.input_tokens"] > 0
    assert tokens[("observer", "output")] >= call.attributes["gen_ai.usage.output_tokens"] > 0
