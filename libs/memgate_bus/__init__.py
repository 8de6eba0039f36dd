"""NATS: the connection, the topology, trace context in headers."""

from memgate_bus.connection import Bus
from memgate_bus.tracing import extract_context, inject_headers

__all__ = ["Bus", "extract_context", "inject_headers"]
