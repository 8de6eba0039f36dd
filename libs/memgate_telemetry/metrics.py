"""Prometheus metrics, served by the edge at /metrics (and by split services on their health port)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

CHAT_REQUESTS = Counter(
    "memgate_chat_requests_total", "Chat completion requests", ["provider", "status", "stream", "memory"]
)
CHAT_LATENCY = Histogram(
    "memgate_chat_request_seconds", "Chat request latency at the edge (to last byte)", ["provider", "stream"]
)
CONTEXT_LOOKUP = Histogram(
    "memgate_context_lookup_seconds", "Context lookup latency seen by the edge",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)
MEMORY_DEGRADED = Counter("memgate_memory_degraded_total", "Requests served without memory", ["reason"])
EXCHANGES_PUBLISHED = Counter("memgate_exchanges_published_total", "Exchange events", ["outcome"])
ENGINE_RESTARTS = Counter("memgate_engine_restarts_total", "Embedded engines restarted by memgate up", ["engine"])
EXCHANGES_OBSERVED = Counter("memgate_exchanges_observed_total", "Exchanges handled by the observer", ["outcome"])
OBSERVATIONS_WRITTEN = Counter("memgate_observations_written_total", "Observations stored")


def render() -> tuple[bytes, str]:
    return generate_latest(), CONTENT_TYPE_LATEST
