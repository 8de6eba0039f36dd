"""OpenTelemetry tracing setup: one provider per process.

Spans go to a JSON-lines file when MEMGATE_TRACES_FILE is set (tests and local debugging),
and to an OTLP collector when OTEL_EXPORTER_OTLP_ENDPOINT is set and the OTLP exporter
package is installed.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

log = logging.getLogger("memgate.telemetry")


class JsonLinesSpanExporter(SpanExporter):
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = []
        for span in spans:
            ctx = span.get_span_context()
            if ctx is None:
                continue
            lines.append(json.dumps({
                "name": span.name,
                "service": span.resource.attributes.get("service.name"),
                "trace_id": f"{ctx.trace_id:032x}",
                "span_id": f"{ctx.span_id:016x}",
                "parent_id": f"{span.parent.span_id:016x}" if span.parent else None,
                "kind": span.kind.name,
                "start": span.start_time,
                "end": span.end_time,
                "attributes": dict(span.attributes or {}),
            }, default=str))
        with self._lock, open(self.path, "a") as f:
            f.write("\n".join(lines) + "\n")
        return SpanExportResult.SUCCESS


_configured = False


def setup_tracing(service_name: str, traces_file: Path | None = None) -> None:
    """Install the global tracer provider once (in `memgate up` all services share it).

    With nowhere to send spans, none is installed: OpenTelemetry's default no-op tracer
    then costs next to nothing per request (recording spans nobody exports measured
    several percent of the edge's CPU).
    """
    global _configured
    if _configured:
        return
    _configured = True
    processors = []
    if traces_file is not None:
        processors.append(BatchSpanProcessor(JsonLinesSpanExporter(traces_file), schedule_delay_millis=200))
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            log.warning("OTEL_EXPORTER_OTLP_ENDPOINT is set but opentelemetry-exporter-otlp-proto-http is not installed")
        else:
            processors.append(BatchSpanProcessor(OTLPSpanExporter()))
    if not processors:
        return
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    for processor in processors:
        provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)


def shutdown_tracing() -> None:
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.shutdown()
