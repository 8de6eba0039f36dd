"""The outbox relay: publishes stored exchanges' events to JetStream, then deletes their rows.

The edge wakes it after each recording commits, so an exchange reaches the observer within
about a tenth of a second (`linger`); it also looks every `interval` seconds, for rows left
by a NATS outage, a crashed edge, or another replica. Rows are claimed before publishing
(`OutboxRepository`), so replicas do not publish the same rows together, and JetStream's
duplicate window (keyed by the exchange id) makes a republish after a lost ack harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from opentelemetry import trace

from memgate_bus import Bus, extract_context, inject_headers
from memgate_bus.subjects import EXCHANGE_SUBJECT
from memgate_edge.errors import RateLimitedLog
from memgate_store.outbox import OutboxRepository, OutboxRow
from memgate_telemetry.metrics import EXCHANGES_PUBLISHED

log = logging.getLogger("memgate.edge.relay")
tracer = trace.get_tracer("memgate.edge")

RETRY_SECONDS = 1.0  # a row the bus refused is tried again after this long


class OutboxRelay:
    def __init__(self, bus: Bus, outbox: OutboxRepository, *, interval: float = 1.0, linger: float = 0.1,
                 batch: int = 256, publish_timeout: float = 2.0) -> None:
        """`linger`: after a wake, how long to let more recordings join the batch (the
        observer waits far longer anyway: its debounce, 500 ms by default). Fewer, larger
        batches cost less all along the way: the claim and the delete, the publishes, and
        the observer's fetches, which return what has arrived. At 100 req/s on one thread,
        100 ms instead of 20 made 0.09 claims a request instead of 0.38, and nats-server's
        CPU 180 us a request instead of 290."""
        self.bus = bus
        self.outbox = outbox
        self.interval = interval
        self.linger = linger
        self.batch = batch
        self.publish_timeout = publish_timeout
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._trouble = RateLimitedLog(every=10.0)

    def wake(self) -> None:
        """A recording committed: publish it now."""
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self, timeout: float = 5.0) -> None:
        """Publish what is there now (within `timeout`); what is left waits in the outbox."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout)
            except TimeoutError:
                log.warning("outbox relay stopped with events unpublished; they go out at the next start")

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
            if not self._stopping:
                await asyncio.sleep(self.linger)
            self._wake.clear()
            try:
                while await self.relay_once() == self.batch:
                    pass  # a full batch: there may be more
            except Exception as exc:
                if self._trouble.allow():
                    log.warning("outbox relay: %s: %s; retrying%s", type(exc).__name__, exc,
                                self._trouble.suppressed_note())
            if self._stopping:
                return

    async def relay_once(self) -> int:
        """Publish one batch of claimed rows; how many rows were claimed."""
        rows = await self.outbox.claim(limit=self.batch)
        if not rows:
            return 0
        if not self.bus.connected:
            await self.outbox.release([r.id for r in rows], after_seconds=RETRY_SECONDS)
            if self._trouble.allow():
                log.warning("NATS is not connected; %d+ exchange event(s) wait in the outbox%s", len(rows),
                            self._trouble.suppressed_note())
            return 0
        outcomes = await asyncio.gather(*(self._publish(row) for row in rows), return_exceptions=True)
        sent = [row.id for row, outcome in zip(rows, outcomes, strict=True) if outcome is None]
        failed = [row.id for row, outcome in zip(rows, outcomes, strict=True) if outcome is not None]
        await self.outbox.delete(sent)
        EXCHANGES_PUBLISHED.labels("published").inc(len(sent))
        if failed:
            EXCHANGES_PUBLISHED.labels("retried").inc(len(failed))
            await self.outbox.release(failed, after_seconds=RETRY_SECONDS)
            error = next(o for o in outcomes if o is not None)
            if self._trouble.allow():
                log.warning("publishing %d exchange event(s) failed (%r); they stay in the outbox%s",
                            len(failed), error, self._trouble.suppressed_note())
            return 0
        return len(rows)

    async def _publish(self, row: OutboxRow) -> None:
        parent = extract_context({"traceparent": row.traceparent} if row.traceparent else None)
        with tracer.start_as_current_span("exchange.publish", context=parent, kind=trace.SpanKind.PRODUCER) as span:
            span.set_attribute("memgate.exchange_id", row.exchange_id)
            headers = inject_headers({"Nats-Msg-Id": row.exchange_id})
            await self.bus.js.publish(EXCHANGE_SUBJECT, row.payload, headers=headers, timeout=self.publish_timeout)
