"""NATS: the connection, the topology, publishing with an outbox, trace context in headers."""

from memgate_bus.connection import Bus
from memgate_bus.publisher import ExchangePublisher
from memgate_bus.tracing import extract_context, inject_headers

__all__ = ["Bus", "ExchangePublisher", "extract_context", "inject_headers"]
