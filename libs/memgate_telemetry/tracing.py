"""OpenTelemetry tracing setup: one provider per process.

Spans go to an OTLP collector (HTTP/protobuf) when `OTEL_EXPORTER_OTLP_ENDPOINT` or
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set, and to a JSON-lines file when
MEMGATE_TRACES_FILE is set (tests and local debugging); both when both are. The exporter
reads the other standard variables itself (`OTEL_EXPORTER_OTLP_HEADERS`, `..._TIMEOUT`,
`..._COMPRESSION`, `..._CERTIFICATE`), the provider reads `OTEL_TRACES_SAMPLER[_ARG]`, the
batch processor `OTEL_BSP_*`, and the resource `OTEL_RESOURCE_ATTRIBUTES`.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

log = logging.getLogger("memgate.telemetry")

OTLP_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")


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


def otlp_endpoint(env: Mapping[str, str]) -> str | None:
    """The OTLP endpoint spans go to, or None: the traces-specific variable is used as it is,
    the general one gets `/v1/traces` appended (by the exporter, as the specification says)."""
    for name in OTLP_ENDPOINT_VARIABLES:
        value = env.get(name, "").strip()
        if value:
            return value
    return None


def service_name(default: str, env: Mapping[str, str]) -> str:
    """OTEL_SERVICE_NAME when set (compose and the k8s manifests set one per workload), else memgate's."""
    return env.get("OTEL_SERVICE_NAME", "").strip() or default


_configured = False


def setup_tracing(default_service_name: str, traces_file: Path | None = None) -> None:
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
    endpoint = otlp_endpoint(os.environ)
    if endpoint is not None:
        if os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf") not in ("http/protobuf", ""):
            log.warning("OTEL_EXPORTER_OTLP_PROTOCOL=%s is not supported: memgate exports OTLP over "
                        "HTTP/protobuf (port 4318 on a collector)", os.environ["OTEL_EXPORTER_OTLP_PROTOCOL"])
        # No arguments: the exporter reads the endpoint, headers, timeout... from the
        # environment itself (headers may hold credentials; they are never logged here).
        processors.append(BatchSpanProcessor(OTLPSpanExporter()))
    if not processors:
        return
    name = service_name(default_service_name, os.environ)
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    for processor in processors:
        provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    if endpoint is not None:
        log.info("exporting traces over OTLP/HTTP as service %s", name)


def shutdown_tracing() -> None:
    """Export what is buffered, then stop (at process exit)."""
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.shutdown()
