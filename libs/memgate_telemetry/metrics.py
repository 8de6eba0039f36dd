"""Prometheus metrics, served by the edge at /metrics (and by split services on their health port).

Labels stay few and bounded: providers are the configured ones, statuses are HTTP codes,
nothing is labelled by tenant, key, thread or model. The dashboard in
deploy/grafana/ and the alert rules in deploy/prometheus/ query these names (a test
checks that every name they use is exported).
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

CHAT_REQUESTS = Counter(
    "memgate_chat_requests_total", "Chat requests (every chat API) by the HTTP status the client got",
    ["provider", "status", "stream", "memory"],
)
CHAT_LATENCY = Histogram(
    "memgate_chat_request_seconds", "Chat request latency at the edge (to last byte), answered requests",
    ["provider", "stream"],
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

TOKENS = Counter(
    "memgate_tokens_total",
    "Tokens by source (chat: proxied requests; observer, reflector, title: memgate's own agents), provider and "
    "direction (input, output; memory: the part of chat input that memgate injected)",
    ["source", "provider", "direction"],
)
COST = Counter(
    "memgate_cost_usd_total",
    "Cost in US dollars on memgate's provider keys (genai-prices tables; unpriced models and "
    "bring-your-own-key requests add nothing), by source and provider",
    ["source", "provider"],
)
OBSERVER_LAG = Histogram(
    "memgate_observer_lag_seconds",
    "From an exchange's event entering JetStream to the observer acking it (its memory committed)",
    buckets=(0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 1800.0, 3600.0),
)
OBSERVER_BACKLOG = Gauge(
    "memgate_observer_backlog_exchanges",
    "Exchanges waiting to be observed, by stage (outbox: not yet published to NATS; stream: in "
    "JetStream, not yet acked by the observers). Sampled periodically by every observer: take max()",
    ["stage"],
)


def count_chat_request(provider: str, status: int, *, stream: bool, memory: bool, seconds: float) -> None:
    """One chat request, whatever its outcome (call once per request, where its usage row is
    recorded; `provider` "none" when it was refused before any provider was asked). Latency is observed for answered ones only
    (a quick 4xx would drag the percentiles down)."""
    stream_label = "true" if stream else "false"
    CHAT_REQUESTS.labels(provider, str(status), stream_label, "on" if memory else "off").inc()
    if status < 400:
        CHAT_LATENCY.labels(provider, stream_label).observe(seconds)


def count_usage(provider: str, input_tokens: int, output_tokens: int, memory_tokens: int = 0,
                cost_usd: float | None = None, *, source: str = "chat") -> None:
    """Tokens and cost of one model call. `memory_tokens` is the part of `input_tokens`
    memgate injected; `cost_usd` None when unpriced, or not paid by memgate (bring your own key)."""
    # (> 0: a counter never goes down, and a provider's odd usage must not raise here)
    if input_tokens > 0:
        TOKENS.labels(source, provider, "input").inc(input_tokens)
    if output_tokens > 0:
        TOKENS.labels(source, provider, "output").inc(output_tokens)
    if memory_tokens > 0:
        TOKENS.labels(source, provider, "memory").inc(memory_tokens)
    if cost_usd is not None and cost_usd > 0:
        COST.labels(source, provider).inc(cost_usd)


def render() -> tuple[bytes, str]:
    return generate_latest(), CONTENT_TYPE_LATEST
