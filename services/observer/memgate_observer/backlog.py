"""The observer backlog gauge: how many exchanges wait to be observed, sampled periodically.

Two stages, two cheap readings: rows still in Postgres's outbox (the relay has not
published them: NATS was away, or the relay is behind), and the observers' JetStream
consumer's unfinished messages (published, not yet acked). Every observer replica reports
the same numbers; dashboards take max().
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from memgate_bus import Bus
from memgate_bus.subjects import EXCHANGE_STREAM, OBSERVER_DURABLE
from memgate_store.outbox import OutboxRepository
from memgate_telemetry.metrics import OBSERVER_BACKLOG

log = logging.getLogger("memgate.observer.backlog")

SAMPLE_INTERVAL_SECONDS = 15.0  # Prometheus's usual scrape interval: sampling faster shows nothing more


class BacklogGauge:
    def __init__(self, bus: Bus, outbox: OutboxRepository, *, interval: float = SAMPLE_INTERVAL_SECONDS) -> None:
        self.bus = bus
        self.outbox = outbox
        self.interval = interval
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def sample(self) -> None:
        """Read both stages now. A stage that cannot be read (its server is away) keeps its
        last reading: the outage has alerts of its own."""
        try:
            OBSERVER_BACKLOG.labels("stream").set(await self.bus.consumer_backlog(EXCHANGE_STREAM, OBSERVER_DURABLE))
        except Exception as exc:
            log.debug("observer backlog (stream) not read: %r", exc)
        try:
            OBSERVER_BACKLOG.labels("outbox").set(await self.outbox.waiting())
        except Exception as exc:
            log.debug("observer backlog (outbox) not read: %r", exc)

    async def start(self) -> None:
        self._stopping.clear()
        self._task = asyncio.create_task(self._run(), name="observer-backlog")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def _run(self) -> None:
        while not self._stopping.is_set():
            await self.sample()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.interval)
