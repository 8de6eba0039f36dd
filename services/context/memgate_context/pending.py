"""Messages this process has answered but not stored yet, which lookups must still see.

In `memgate up` on its embedded Postgres the edge ends a response before its exchange is
stored: it journals the event on disk, hands the messages here, and stores and publishes
in the background (`ExchangeRecorder`). Until that store is done, a follow-up's lookup
takes them from here; then (`stored`) they move into the thread's view, if it has one,
and leave.

A lookup takes its `lines` *before* its view. An exchange that left after that is in the
view by then (absorbed, or committed before the view's query); one that left before was
absorbed even earlier. Either way the lookup sees it, once: ids the view holds are skipped.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime

from memgate_context.view import MessageLine, ThreadViews, message_line
from memgate_core.events import MessageRecord
from memgate_core.tokens import count_tokens
from memgate_store.threads import StoredMessage

# A safety net: an entry leaves once its store is done (stored or not), so only a store
# hanging this long leaves one behind.
KEEP_SECONDS = 120.0
# A deleted thread's mark refuses exchanges that began before the delete (as its tombstone
# refuses their store) for this long: longer than any exchange runs.
DELETED_MARK_SECONDS = 3600.0
SWEEP_AT = 10_000  # entries (or marks) beyond which expired ones are swept


class PendingMessages:
    def __init__(self, views: ThreadViews | None = None, *, keep_seconds: float = KEEP_SECONDS) -> None:
        self.views = views
        self.keep_seconds = keep_seconds
        # (tenant, thread) -> exchange id -> (added at, its message lines)
        self._threads: dict[tuple[str, str], dict[str, tuple[float, list[MessageLine]]]] = {}
        self._deleted: dict[tuple[str, str], float] = {}  # (tenant, thread) -> deleted at (unix time)

    def add(self, tenant: str, thread_id: str, exchange_id: str, messages: Sequence[MessageRecord]) -> None:
        deleted_at = self._deleted.get((tenant, thread_id))
        if not messages or (deleted_at is not None and min(m.created_at for m in messages) <= deleted_at):
            return  # an exchange that began before its thread was deleted stays out of it
        if len(self._threads) >= SWEEP_AT:
            self._sweep()
        lines = [
            message_line(StoredMessage(
                m.id, thread_id, exchange_id, m.role, m.content, count_tokens(m.content),
                datetime.fromtimestamp(m.created_at, UTC), False,
            ))
            for m in messages
        ]
        self._threads.setdefault((tenant, thread_id), {})[exchange_id] = (time.monotonic(), lines)

    async def stored(self, tenant: str, thread_id: str, exchange_id: str, *, inserted: bool) -> None:
        """Its store is done. `inserted`: by that store, so over to the view as they are.
        Otherwise (stored and maybe observed already, refused, failed: the observer stores
        it from the event) the view is only told to read the database again."""
        entry = self._threads.get((tenant, thread_id), {}).get(exchange_id)
        if self.views is not None:
            if inserted and entry is not None:
                await self.views.absorb(tenant, thread_id, entry[1])
            else:
                self.views.invalidate(tenant, thread_id)
        self._discard(tenant, thread_id, exchange_id)

    def _discard(self, tenant: str, thread_id: str, exchange_id: str) -> None:
        exchanges = self._threads.get((tenant, thread_id))
        if exchanges is not None:
            exchanges.pop(exchange_id, None)
            if not exchanges:
                del self._threads[(tenant, thread_id)]

    def forget(self, tenant: str, thread_ids: Sequence[str]) -> None:
        """Deleted threads: drop their entries, and refuse exchanges that began before now."""
        now = time.time()
        if len(self._deleted) >= SWEEP_AT:
            self._deleted = {k: at for k, at in self._deleted.items() if at > now - DELETED_MARK_SECONDS}
        for thread_id in thread_ids:
            self._threads.pop((tenant, thread_id), None)
            self._deleted[(tenant, thread_id)] = now
            if self.views is not None:
                self.views.forget(tenant, thread_id)

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
