"""Messages this process has answered but not stored yet, which lookups must still see.

In `memgate up` the edge ends a response before its exchange is stored: it journals the
event on disk, hands the messages here, and stores and publishes in the background
(`ExchangeRecorder`). Until the store commits, a follow-up's lookup takes them from here.

A lookup takes its `lines` *before* its database query. An exchange discarded after that
was committed before the query ran, so the query returns it; one discarded before was
committed even earlier. Either way the lookup sees it, once: the view skips ids it holds.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime, timezone

from memgate_context.view import MessageLine, message_line
from memgate_core.events import MessageRecord
from memgate_core.tokens import count_tokens
from memgate_store.threads import StoredMessage

# An exchange whose store failed stays visible this long; the observer stores it from the
# event meanwhile (with NATS down as well, the spool keeps it until NATS is back).
KEEP_SECONDS = 120.0
SWEEP_AT = 10_000  # threads with entries; more, and expired ones are swept on the next add


class PendingMessages:
    def __init__(self, *, keep_seconds: float = KEEP_SECONDS) -> None:
        self.keep_seconds = keep_seconds
        # (tenant, thread) -> exchange id -> (added at, its message lines)
        self._threads: dict[tuple[str, str], dict[str, tuple[float, list[MessageLine]]]] = {}

    def add(self, tenant: str, thread_id: str, exchange_id: str, messages: Sequence[MessageRecord]) -> None:
        if len(self._threads) >= SWEEP_AT:
            self._sweep()
        lines = [
            message_line(StoredMessage(
                m.id, thread_id, exchange_id, m.role, m.content, count_tokens(m.content),
                datetime.fromtimestamp(m.created_at, timezone.utc), False,
            ))
            for m in messages
        ]
        self._threads.setdefault((tenant, thread_id), {})[exchange_id] = (time.monotonic(), lines)

    def discard(self, tenant: str, thread_id: str, exchange_id: str) -> None:
        exchanges = self._threads.get((tenant, thread_id))
        if exchanges is not None:
            exchanges.pop(exchange_id, None)
            if not exchanges:
                del self._threads[(tenant, thread_id)]

    def forget(self, tenant: str, thread_id: str | None = None) -> None:
        """A deleted thread (or, without `thread_id`, all of a tenant's after a resource delete)."""
        for key in [k for k in self._threads if k[0] == tenant and thread_id in (None, k[1])]:
            del self._threads[key]

    def lines(self, tenant: str, thread_id: str) -> list[MessageLine]:
        exchanges = self._threads.get((tenant, thread_id))
        if not exchanges:
            return []
        cutoff = time.monotonic() - self.keep_seconds
        return [line for added, lines in exchanges.values() if added >= cutoff for line in lines]

    def _sweep(self) -> None:
        cutoff = time.monotonic() - self.keep_seconds
        for key, exchanges in list(self._threads.items()):
            for exchange_id in [e for e, (added, _) in exchanges.items() if added < cutoff]:
                del exchanges[exchange_id]
            if not exchanges:
                del self._threads[key]
