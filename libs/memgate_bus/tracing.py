"""Trace context in NATS message headers (W3C traceparent), so one trace spans every hop."""

from __future__ import annotations

from opentelemetry import context as otel_context
from opentelemetry import propagate


def inject_headers(headers: dict[str, str] | None = None) -> dict[str, str]:
    carrier = dict(headers or {})
    propagate.inject(carrier)
    return carrier


def extract_context(headers: dict[str, str] | None) -> otel_context.Context:
    return propagate.extract(headers or {})
