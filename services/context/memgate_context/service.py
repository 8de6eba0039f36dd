"""The context service: subscribes to lookups (queue group, so replicas share the load)."""

from __future__ import annotations

import asyncio

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from memgate_bus import Bus
from memgate_bus.subjects import CONTEXT_LOOKUP_SUBJECT, CONTEXT_QUEUE
from memgate_context.assemble import ContextAssembler
from memgate_context.handler import LookupHandler
from memgate_store import Stores
from memgate_vectors import Embedder, VectorIndex


class ContextService:
    def __init__(self, bus: Bus, stores: Stores, index: VectorIndex, embedder: Embedder) -> None:
        self.bus = bus
        self.handler = LookupHandler(ContextAssembler(stores, index, embedder))
        self._sub: Subscription | None = None
        self._inflight: set[asyncio.Task[None]] = set()

    async def _dispatch(self, msg: Msg) -> None:
        # nats-py runs a subscription's callbacks one at a time; lookups must run concurrently.
        task = asyncio.create_task(self.handler(msg))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def start(self) -> None:
        self._sub = await self.bus.nc.subscribe(CONTEXT_LOOKUP_SUBJECT, queue=CONTEXT_QUEUE, cb=self._dispatch)

    async def stop(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()
            self._sub = None
