"""Which resource each thread is bound to, cached: asked on every memory request.

A thread's resource never changes while it exists, so the only staleness is a deleted
thread. This edge forgets its own deletes at once; other edges' come as notices on NATS
(`memgate_bus.notices`), and the expiry bounds what a lost notice can cost.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from nats.aio.subscription import Subscription

from memgate_bus import Bus
from memgate_bus.notices import announce_deleted, on_deleted
from memgate_core.errors import NotFound
from memgate_core.events import ThreadsDeleted
from memgate_store.threads import ThreadRepository

CACHE_SIZE = 50_000
CACHE_SECONDS = 60.0


class ThreadBindings:
    def __init__(self, threads: ThreadRepository, bus: Bus) -> None:
        self.threads = threads
        self.bus = bus
        self._bound: OrderedDict[tuple[str, str], tuple[str, float]] = OrderedDict()  # -> (resource, until)
        self._sub: Subscription | None = None

    async def check(self, tenant: str, thread_id: str, resource_id: str, *, param: str = "x-thread-id") -> None:
        """Create the thread for `resource_id` if new; a 404 if it belongs to another resource."""
        key = (tenant, thread_id)
        now = time.monotonic()
        cached = self._bound.get(key)
        if cached is not None and cached[1] > now:
            bound = cached[0]
        else:
            bound = await self.threads.bind(tenant, thread_id, resource_id)
            self._bound[key] = (bound, now + CACHE_SECONDS)
            if len(self._bound) > CACHE_SIZE:
                self._bound.popitem(last=False)
        if bound != resource_id:
            # Same answer as for a thread that does not exist: ids of others are not revealed.
            raise NotFound(f"Thread '{thread_id}' was not found for resource '{resource_id}'.",
                           code="thread_not_found", param=param)

    async def deleted(self, tenant: str, thread_ids: list[str]) -> None:
        """Threads this edge deleted: forget them here, and tell the other edges."""
        self._forget(ThreadsDeleted(tenant, thread_ids))
        await announce_deleted(self.bus, tenant, thread_ids)

    def _forget(self, notice: ThreadsDeleted) -> None:
        for thread_id in notice.thread_ids:
            self._bound.pop((notice.tenant, thread_id), None)

    async def start(self) -> None:
        self._sub = await on_deleted(self.bus, self._forget)

    async def stop(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()
            self._sub = None
