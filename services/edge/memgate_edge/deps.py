"""Everything the edge's handlers need, built once per process and injected as `deps`."""

from __future__ import annotations

import msgspec

from memgate_core.config import Settings
from memgate_edge.auth import Authenticator
from memgate_edge.bindings import ThreadBindings
from memgate_edge.chat.exchange import ExchangeRecorder
from memgate_edge.chat.service import ChatService
from memgate_edge.ratelimit import RateLimiter
from memgate_edge.usage import UsageRecorder
from memgate_store import Stores
from memgate_telemetry.health import Readiness
from memgate_vectors import TextEmbedder, VectorIndex


class EdgeDeps(msgspec.Struct):
    settings: Settings
    stores: Stores
    auth: Authenticator
    chat: ChatService
    recorder: ExchangeRecorder  # chat's and the memory import's one way to store an exchange
    bindings: ThreadBindings  # which resource each thread belongs to (cached)
    index: VectorIndex
    embedder: TextEmbedder
    # Checks /readyz runs, by name (database, nats, vectors...).
    readiness: Readiness
    limiter: RateLimiter  # per-key limits, shared by every replica
    usage: UsageRecorder  # per-request usage, buffered and written in the background
    notices: list[str] = msgspec.field(default_factory=list)  # shown in the dashboard
    observer_name: str = "local"
