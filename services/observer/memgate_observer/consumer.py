"""The durable JetStream consumer loop: fetch → decode → handle → ack."""

from __future__ import annotations

import asyncio
import logging

import msgspec
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import AckPolicy, ConsumerConfig
from opentelemetry import trace

from memgate_bus import Bus, extract_context
from memgate_bus.subjects import EXCHANGE_STREAM, EXCHANGE_SUBJECT, OBSERVER_DURABLE
from memgate_core.events import exchange_decoder
from memgate_observer.handler import ExchangeHandler

log = logging.getLogger("memgate.observer.consumer")
tracer = trace.get_tracer("memgate.observer")

RETRY_DELAY_SECONDS = 2.0


class ExchangeConsumer:
    def __init__(self, bus: Bus, handler: ExchangeHandler, *, batch: int = 16) -> None:
        self.bus = bus
        self.handler = handler
        self.batch = batch
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    async def start(self) -> None:
        sub = await self.bus.js.pull_subscribe(
            EXCHANGE_SUBJECT, durable=OBSERVER_DURABLE, stream=EXCHANGE_STREAM,
            config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, ack_wait=120, max_ack_pending=1000),
        )
        self._task = asyncio.create_task(self._run(sub), name="observer-consumer")

    async def _run(self, sub) -> None:  # type: ignore[no-untyped-def]
        while not self._stopping.is_set():
            try:
                messages = await sub.fetch(self.batch, timeout=1)
            except NatsTimeout:
                continue
            except Exception as exc:  # noqa: BLE001 - NATS down: wait and try again
                log.warning("fetch failed: %s", exc)
                await asyncio.sleep(1)
                continue
            for msg in messages:
                await self._one(msg)

    async def _one(self, msg) -> None:  # type: ignore[no-untyped-def]
        parent = extract_context(msg.headers)
        with tracer.start_as_current_span("observer.exchange", context=parent, kind=trace.SpanKind.CONSUMER):
            try:
                event = exchange_decoder.decode(msg.data)
            except msgspec.DecodeError as exc:
                # A message we can never decode: keep it out of the loop, loudly.
                log.error("undecodable exchange event (seq %s): %s", msg.metadata.sequence.stream, exc)
                await msg.term()
                return
            try:
                await self.handler.handle(event)
            except Exception:  # noqa: BLE001 - redeliver later; nothing was acked
                log.exception("handling exchange %s failed; will retry", event.exchange_id)
                await msg.nak(delay=RETRY_DELAY_SECONDS)
                return
            await msg.ack()

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout=5)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                self._task.cancel()
