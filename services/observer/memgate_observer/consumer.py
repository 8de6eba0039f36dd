"""The durable JetStream consumer: fetch → decode → buffer per thread → (debounce) → handle → ack.

A burst of exchanges on one thread is observed together: each thread's deliveries wait
in a buffer until the thread has been quiet for `debounce` seconds (or the buffer holds
`max_batch` exchanges, or its oldest has waited `max_wait`), then one `handle_batch`
call observes them all. Each delivery is acked only after that call committed; while
deliveries wait or are being handled, `in_progress()` keeps JetStream from redelivering
them. One thread's batches run one at a time; up to `concurrency` threads are handled at once.

A failed batch is nak'ed with a growing delay. If it failed for something other than an
outage (of Postgres, NATS or the provider: `transient`), or keeps failing even so, its
exchanges are first observed again one at a time, so that one bad exchange (or one batch
too big for the provider) holds back none of the others. An exchange that fails so, not
for an outage, `max_deliveries` times (counted by this process) and at least
`set_aside_after` seconds after it was published, is set aside: recorded as an observer
failure (its messages stay in memory, raw), then terminated; the event stays in the
stream (limits retention) for a week. Outages never set anything aside. A 5xx from the
observer's model is an outage unless the model is answering the others: when at least half
of its recent calls (within `PROVIDER_UP_WINDOW`) for other exchanges got an answer, it is
refusing this one, and that failure counts (else an exchange that makes it fail every time
was retried, and paid for, for ever).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Iterable
from typing import Any

import asyncpg
import msgspec
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import AckPolicy, ConsumerConfig
from opentelemetry import trace

from memgate_bus import Bus, extract_context
from memgate_bus.subjects import EXCHANGE_STREAM, EXCHANGE_SUBJECT, OBSERVER_DURABLE
from memgate_core.errors import GatewayError
from memgate_core.events import ExchangeRecorded, exchange_decoder
from memgate_observer.handler import ExchangeHandler
from memgate_providers import UpstreamStatusError
from memgate_telemetry.metrics import OBSERVER_LAG

log = logging.getLogger("memgate.observer.consumer")
tracer = trace.get_tracer("memgate.observer")

ACK_WAIT_SECONDS = 120
RETRY_DELAYS = (2.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0)  # by delivery attempt; the last repeats
MAX_DELIVERIES = 10  # the tenth failure not caused by an outage (19+ minutes of retries) sets an exchange aside
SET_ASIDE_AFTER_SECONDS = 15 * 60  # ... if it was published at least this long ago
SPLIT_AFTER_DELIVERIES = 3  # a batch failing for an outage this often is tried one exchange at a time
PROVIDER_UP_WINDOW = 300.0  # seconds: the model's calls for other exchanges this recent tell whether it is up

Msg = Any  # nats.aio.msg.Msg


def retry_delay(num_delivered: int) -> float:
    return RETRY_DELAYS[min(max(num_delivered, 1), len(RETRY_DELAYS)) - 1]


def transient(error: BaseException) -> bool:
    """An outage (database, NATS, the provider) or a rolled-back transaction (a deadlock with a
    concurrent store or delete), not something wrong with the exchanges."""
    if isinstance(error, GatewayError):
        return error.status >= 500 or error.status == 429
    return isinstance(error, (OSError, TimeoutError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError,
                              asyncpg.exceptions.OperatorInterventionError,
                              asyncpg.exceptions.InsufficientResourcesError,
                              asyncpg.exceptions.TransactionRollbackError))


def _model_5xx(error: BaseException) -> bool:
    """The observer's model answered with a 5xx status (not a timeout or a failed connection)."""
    return isinstance(error, UpstreamStatusError) and error.upstream_status >= 500


class _Delivery:
    """One JetStream message, its event, and the span that follows it until ack or nak."""

    __slots__ = ("event", "msg", "span")

    def __init__(self, msg: Msg, event: ExchangeRecorded, span: trace.Span) -> None:
        self.msg = msg
        self.event = event
        self.span = span


class _Buffer:
    """One thread's deliveries waiting to be observed."""

    def __init__(self, now: float) -> None:
        self.deliveries: list[_Delivery] = []
        self.first_at = now
        self.last_at = now
        self.changed = asyncio.Event()


class ExchangeConsumer:
    def __init__(
        self, bus: Bus, handler: ExchangeHandler, *, debounce: float = 0.5, max_batch: int = 32,
        max_wait: float | None = None, concurrency: int = 8, fetch_batch: int = 64, max_in_flight: int = 512,
        ack_wait: float = ACK_WAIT_SECONDS, max_deliveries: int = MAX_DELIVERIES,
        set_aside_after: float = SET_ASIDE_AFTER_SECONDS,
    ) -> None:
        self.bus = bus
        self.handler = handler
        self.debounce = debounce
        self.max_batch = max_batch
        self.max_wait = max_wait if max_wait is not None else max(5.0, 10 * debounce)
        self.fetch_batch = fetch_batch
        self.max_in_flight = max_in_flight
        self.ack_wait = ack_wait
        self.max_deliveries = max_deliveries
        self.set_aside_after = set_aside_after
        self._failures: dict[str, int] = {}  # exchange id -> failures not caused by an outage, here
        # The observer model's recent calls: (monotonic time, the batch's exchange ids, whether it answered).
        self._model_calls: deque[tuple[float, frozenset[str], bool]] = deque(maxlen=64)
        self._slots = asyncio.Semaphore(concurrency)
        self._buffers: dict[tuple[str, str], _Buffer] = {}
        self._flushers: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._unacked: dict[int, _Delivery] = {}  # by id(msg): every delivery not yet acked or nak'ed
        self._room = asyncio.Event()
        self._room.set()
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        sub = await self.bus.js.pull_subscribe(
            EXCHANGE_SUBJECT, durable=OBSERVER_DURABLE, stream=EXCHANGE_STREAM,
            config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, ack_wait=self.ack_wait, max_ack_pending=1000),
        )
        self._tasks = [asyncio.create_task(self._run(sub), name="observer-consumer"),
                       asyncio.create_task(self._keep_alive(), name="observer-keepalive")]

    # ------------------------------------------------------------------ fetching

    async def _run(self, sub) -> None:  # type: ignore[no-untyped-def]
        while not self._stopping.is_set():
            if len(self._unacked) >= self.max_in_flight:
                self._room.clear()
                await self._room.wait()
                continue
            try:
                messages = await sub.fetch(min(self.fetch_batch, self.max_in_flight - len(self._unacked)), timeout=1)
            except (NatsTimeout, TimeoutError):  # nothing to fetch (nats-py raises either)
                continue
            except Exception as exc:
                if self._stopping.is_set():
                    return
                log.warning("fetch failed: %r", exc)
                await asyncio.sleep(1)
                continue
            if self._stopping.is_set():  # fetched as stop began: redelivered at once, elsewhere or later
                for msg in messages:
                    with contextlib.suppress(Exception):
                        await msg.nak(delay=0.1)
                return
            for msg in messages:
                try:
                    await self._accept(msg)
                except Exception:
                    # Not acked: JetStream redelivers it after ack_wait.
                    log.exception("could not accept a delivery; it will be redelivered")

    async def _accept(self, msg: Msg) -> None:
        try:
            event = exchange_decoder.decode(msg.data)
        except msgspec.DecodeError as exc:
            # A message we can never decode: keep it out of the loop, loudly.
            log.error("undecodable exchange event (seq %s): %s", msg.metadata.sequence.stream, exc)
            await msg.term()
            return
        span = tracer.start_span("observer.exchange", context=extract_context(msg.headers),
                                 kind=trace.SpanKind.CONSUMER)
        span.set_attribute("memgate.exchange_id", event.exchange_id)
        span.set_attribute("memgate.thread_id", event.thread_id)
        delivery = _Delivery(msg, event, span)
        self._unacked[id(msg)] = delivery
        key = (event.tenant, event.thread_id)
        loop = asyncio.get_running_loop()
        buffer = self._buffers.get(key)
        if buffer is None:
            buffer = self._buffers[key] = _Buffer(loop.time())
        buffer.deliveries.append(delivery)
        buffer.last_at = loop.time()
        buffer.changed.set()
        if key not in self._flushers:
            self._flushers[key] = asyncio.create_task(self._flush_thread(key), name=f"observer-thread:{key[1]}")

    # ------------------------------------------------------------------ batching

    async def _flush_thread(self, key: tuple[str, str]) -> None:
        """Observe a thread's buffered deliveries, batch after batch, until none are left."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                buffer = self._buffers[key]
                while not self._stopping.is_set() and len(buffer.deliveries) < self.max_batch:
                    due = min(buffer.last_at + self.debounce, buffer.first_at + self.max_wait)
                    if loop.time() >= due:
                        break
                    buffer.changed.clear()
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(buffer.changed.wait(), due - loop.time())
                batch = buffer.deliveries[: self.max_batch]
                del buffer.deliveries[: self.max_batch]
                if not buffer.deliveries:
                    del self._buffers[key]
                async with self._slots:
                    await self._process(batch)
                if key not in self._buffers:
                    return
                if buffer.deliveries and self._buffers.get(key) is buffer:
                    buffer.first_at = loop.time()  # the rest of an oversized burst: its own max_wait
        finally:
            self._flushers.pop(key, None)

    async def _process(self, batch: list[_Delivery]) -> None:
        first = batch[0].event
        error = await self._observe(batch)
        if error is None:
            await self._reflect(batch[0])
        elif len(batch) == 1 or (transient(error) and
                                 max(d.msg.metadata.num_delivered for d in batch) < SPLIT_AFTER_DELIVERIES):
            log.error("observing %d exchange(s) of thread %s failed; will retry", len(batch), first.thread_id,
                      exc_info=error)
            for delivery in batch:
                await self._retry_or_set_aside(delivery, error)
        else:  # one bad exchange must not hold back the others: one at a time
            log.warning("observing %d exchanges of thread %s together failed (%r); observing them one by one",
                        len(batch), first.thread_id, error)
            failures = [(d, alone) for d in batch if (alone := await self._observe([d])) is not None]
            for delivery, alone in failures:
                log.error("observing exchange %s of thread %s failed", delivery.event.exchange_id,
                          first.thread_id, exc_info=alone)
                await self._retry_or_set_aside(delivery, alone)
            if len(failures) < len(batch):
                await self._reflect(batch[0])

    async def _observe(self, batch: list[_Delivery]) -> Exception | None:
        """Observe and ack the batch; the error if it failed (nothing acked then)."""
        links = [trace.Link(d.span.get_span_context()) for d in batch[1:]]
        parent = trace.set_span_in_context(batch[0].span)
        ids = frozenset(d.event.exchange_id for d in batch)
        try:
            with tracer.start_as_current_span("observer.batch", context=parent, links=links) as span:
                span.set_attribute("memgate.exchanges", len(batch))
                result = await self.handler.handle_batch([d.event for d in batch])
        except Exception as exc:
            if _model_5xx(exc):
                self._model_calls.append((time.monotonic(), ids, False))
            return exc
        if result.outcome in ("observed", "failed"):  # (the model answered: it was asked, and it is up)
            self._model_calls.append((time.monotonic(), ids, True))
        await self._settle(batch, ok=True)
        return None

    async def _reflect(self, delivery: _Delivery) -> None:
        event = delivery.event
        try:
            # In the trace of the exchange that made memory grow (its span has ended: only its ids are used).
            with trace.use_span(delivery.span, end_on_exit=False, record_exception=False,
                                set_status_on_exception=False):
                await self.handler.reflect_if_needed(event.tenant, event.thread_id)
        except Exception:
            log.exception("reflecting thread %s failed", event.thread_id)

    async def _retry_or_set_aside(self, delivery: _Delivery, error: Exception) -> None:
        meta = delivery.msg.metadata
        event = delivery.event
        if transient(error) and not self._refused(error, event.exchange_id):
            await self._settle([delivery], ok=False)
            return
        if len(self._failures) > 10_000:  # (exchanges another replica took over)
            self._failures.clear()
        failures = self._failures[event.exchange_id] = self._failures.get(event.exchange_id, 0) + 1
        age = time.time() - meta.timestamp.timestamp() if meta.timestamp else 0.0
        if failures < self.max_deliveries or age < self.set_aside_after:
            await self._settle([delivery], ok=False)
            return
        try:
            recorded = await self.handler.set_aside(event, f"set aside after {failures} failures: {error!r}")
        except Exception as exc:
            log.warning("could not set exchange %s aside (%r); it will be retried", event.exchange_id, exc)
            await self._settle([delivery], ok=False, delay=RETRY_DELAYS[-1])
            return
        if recorded:
            log.error("set exchange %s of thread %s aside after %d failures; its messages stay raw "
                      "and the event stays in stream %s at sequence %d", event.exchange_id, event.thread_id,
                      failures, EXCHANGE_STREAM, meta.sequence.stream)
        self._failures.pop(event.exchange_id, None)
        await self._settle([delivery], ok=False, terminate=True)

    def _refused(self, error: Exception, exchange_id: str) -> bool:
        """The observer's model answered 5xx for this exchange while answering most others."""
        if not _model_5xx(error):
            return False
        since = time.monotonic() - PROVIDER_UP_WINDOW
        others = [answered for at, ids, answered in self._model_calls if at >= since and exchange_id not in ids]
        return bool(others) and 2 * sum(others) >= len(others)

    async def _settle(self, batch: Iterable[_Delivery], *, ok: bool, delay: float | None = None,
                      terminate: bool = False) -> None:
        """Ack (after the commit), nak (with a growing delay) or terminate each delivery; end its span."""
        now = time.time()
        for d in batch:
            self._unacked.pop(id(d.msg), None)
            if ok:
                self._failures.pop(d.event.exchange_id, None)
                if d.msg.metadata.timestamp is not None:  # (the clocks of NATS and this host may differ a little)
                    OBSERVER_LAG.observe(max(0.0, now - d.msg.metadata.timestamp.timestamp()))
            try:
                if ok:
                    await d.msg.ack()
                elif terminate:
                    await d.msg.term()
                else:
                    await d.msg.nak(delay=delay if delay is not None else retry_delay(d.msg.metadata.num_delivered))
            except Exception as exc:
                log.warning("could not settle exchange %s: %s", d.event.exchange_id, exc)
            if not ok:
                d.span.set_status(trace.StatusCode.ERROR)
            d.span.end()
        self._room.set()

    async def _keep_alive(self) -> None:
        """Tell JetStream that waiting and in-progress deliveries are still being worked on."""
        interval = max(self.ack_wait / 4, 0.1)
        while not self._stopping.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), interval)
            for d in list(self._unacked.values()):
                with contextlib.suppress(Exception):
                    await d.msg.in_progress()

    # ------------------------------------------------------------------ stopping

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop fetching, observe what is buffered now (within `timeout`), nak whatever is left."""
        self._stopping.set()
        self._room.set()
        # The fetch loop ends first (within its fetch's second): what it fetched meanwhile
        # starts no flusher after those awaited below.
        if self._tasks:
            await asyncio.wait(self._tasks[:1], timeout=2)
        for buffer in self._buffers.values():
            buffer.changed.set()
        flushers = list(self._flushers.values())
        if flushers:
            _, pending = await asyncio.wait(flushers, timeout=timeout)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1)
        for task in self._tasks:
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*self._tasks, return_exceptions=True)
        leftover = list(self._unacked.values())
        if leftover:  # redelivered at once, to another replica or the next start
            await self._settle(leftover, ok=False, delay=0.1)
