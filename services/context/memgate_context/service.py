"""The context service: subscribes to lookups (queue group, so replicas share the load).

`lookup` is also called directly by an edge in the same process (`memgate up`): the same
assembly, without the NATS hop. Either way a lookup reads what is stored (its thread's view
asks Postgres what changed), so it needs nothing from the edge or the observer.
"""

from __future__ import annotations

import asyncio

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from opentelemetry import trace

from memgate_bus import Bus
from memgate_bus.subjects import CONTEXT_LOOKUP_SUBJECT, CONTEXT_QUEUE
from memgate_context.assemble import ContextAssembler
from memgate_context.handler import LookupHandler
from memgate_core.context import ContextBlock, ContextLookup
from memgate_store import Stores
from memgate_vectors import TextEmbedder, VectorIndex

tracer = trace.get_tracer("memgate.context")


class ContextService:
    def __init__(self, bus: Bus, stores: Stores, index: VectorIndex, embedder: TextEmbedder) -> None:
        self.bus = bus
        self.assembler = ContextAssembler(stores, index, embedder)
        self.handler = LookupHandler(self.assembler)
        self._sub: Subscription | None = None
        self._inflight: set[asyncio.Task[None]] = set()

    async def lookup(self, q: ContextLookup) -> ContextBlock:
        """The in-process path: same assembly, same span, no NATS hop and no encoding."""
        with tracer.start_as_current_span("context.lookup") as span:
            span.set_attribute("memgate.thread_id", q.thread_id)
            block = await self.assembler.lookup(q)
            span.set_attribute("memgate.tokens", block.tokens)
            return block

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
