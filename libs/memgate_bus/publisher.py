"""Publishing `ExchangeCompleted` so that no completed exchange is ever lost.

The edge publishes to JetStream and waits for the stream's ack. If NATS cannot take the
event, it goes to an on-disk spool (one fsynced file per event) and a background task
republishes it when NATS is back. JetStream's duplicate window (keyed by exchange id)
makes a republish after a lost ack harmless.

An edge that answers before it publishes (`memgate up`) first `hold`s the event in an
append-only `Journal`; the publish settles it. Events a dead process left unsettled there
are moved into the spool at the next `start`.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from opentelemetry import trace

from memgate_bus.connection import Bus
from memgate_bus.journal import Journal
from memgate_bus.subjects import EXCHANGE_SUBJECT
from memgate_bus.tracing import inject_headers
from memgate_core.events import ExchangeCompleted, exchange_encoder

log = logging.getLogger("memgate.bus.publisher")
tracer = trace.get_tracer("memgate.bus")


class ExchangePublisher:
    def __init__(self, bus: Bus, spool_dir: Path, *, publish_timeout: float = 2.0) -> None:
        self.bus = bus
        self.spool_dir = spool_dir
        self.publish_timeout = publish_timeout
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        self.journal = Journal(spool_dir / "journal")
        self._drainer: asyncio.Task[None] | None = None

    def hold(self, event: ExchangeCompleted) -> bool:
        """Journal `event` until `publish(event, held=True)` has it acked or spooled.

        False if the disk refuses: the caller then publishes before answering.
        """
        try:
            traceparent = inject_headers({}).get("traceparent", "")
            self.journal.add(event.exchange_id, traceparent, exchange_encoder.encode(event))
        except OSError as exc:
            log.warning("could not journal exchange %s (%s)", event.exchange_id, exc)
            return False
        return True

    async def publish(self, event: ExchangeCompleted, *, held: bool = False) -> bool:
        """Publish or spool; returns True when JetStream acked it directly. `held`: it was
        `hold`-ed, and is settled in the journal once acked or spooled."""
        with tracer.start_as_current_span("exchange.publish", kind=trace.SpanKind.PRODUCER) as span:
            span.set_attribute("memgate.exchange_id", event.exchange_id)
            payload = exchange_encoder.encode(event)
            headers = inject_headers({"Nats-Msg-Id": event.exchange_id})
            try:
                await self._send(payload, headers)
                published = True
            except Exception as exc:
                log.warning("NATS publish failed (%s); spooling exchange %s", type(exc).__name__, event.exchange_id)
                span.set_attribute("memgate.spooled", True)
                try:
                    await asyncio.to_thread(self._spool, event.exchange_id, payload, headers)
                except OSError as spool_error:  # NATS down and the disk refusing too
                    log.error("could not spool exchange %s either (%s); %s", event.exchange_id, spool_error,
                              "the journal keeps it for the next start" if held else "it is lost")
                    return False  # (a held event stays unsettled in the journal)
                published = False
            if held:
                self.journal.settle(event.exchange_id)
            return published

    async def _send(self, payload: bytes, headers: dict[str, str]) -> None:
        if not self.bus.connected:
            raise ConnectionError("NATS is not connected")
        await self.bus.js.publish(EXCHANGE_SUBJECT, payload, headers=headers, timeout=self.publish_timeout)

    def _spool(self, exchange_id: str, payload: bytes, headers: dict[str, str]) -> None:
        final = self.spool_dir / f"{exchange_id}.json"
        tmp = final.with_suffix(".tmp")
        traceparent = headers.get("traceparent", "")
        with open(tmp, "wb") as f:
            f.write(traceparent.encode() + b"\n" + payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)

    def spooled(self) -> list[Path]:
        return sorted(self.spool_dir.glob("*.json"))

    async def drain_spool(self) -> int:
        """Republish spooled events, oldest first; returns how many went out."""
        sent = 0
        for path in self.spooled():
            traceparent, _, payload = path.read_bytes().partition(b"\n")
            headers = {"Nats-Msg-Id": path.stem}
            if traceparent:
                headers["traceparent"] = traceparent.decode()
            try:
                await self._send(payload, headers)
            except Exception:
                break
            path.unlink(missing_ok=True)
            sent += 1
        if sent:
            log.info("republished %d spooled exchange(s)", sent)
        return sent

    def start(self, interval: float = 1.0) -> None:
        left = self.journal.recover()  # held by a process that died before publishing them
        for event in left:
            self._spool(event.event_id, event.payload, {"traceparent": event.traceparent})
        self.journal.forget_recovered()
        if left:
            log.warning("spooled %d exchange(s) a previous run answered but did not publish", len(left))

        async def loop() -> None:
            while True:
                try:
                    if self.spooled():
                        await self.drain_spool()
                except Exception:
                    log.exception("spool drain failed")
                await asyncio.sleep(interval)

        self._drainer = asyncio.create_task(loop(), name="exchange-spool-drainer")

    async def stop(self) -> None:
        self.journal.close()
        if self._drainer:
            self._drainer.cancel()
            try:
                await self._drainer
            except asyncio.CancelledError:
                pass
