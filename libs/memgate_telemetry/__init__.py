"""Telemetry: OpenTelemetry tracing and Prometheus metrics."""

from memgate_telemetry.tracing import setup_tracing, shutdown_tracing

__all__ = ["setup_tracing", "shutdown_tracing"]
