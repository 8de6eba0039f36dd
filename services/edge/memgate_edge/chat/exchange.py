"""Recording an exchange: its messages and its outbox row, in one Postgres transaction.

This happens before the client sees the end of the response, so a follow-up sent the
instant a response ends already finds the exchange in memory, through any edge replica,
and nothing answered is lost: the outbox relay (`memgate_edge.relay`) publishes the event
to the observer once the transaction has committed, however long NATS is away.

Under load, exchanges finishing while a recording runs wait for the next, and are recorded
together: one transaction and one WAL flush for all of them (each response still waits for
its own commit).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Coroutine, Sequence
from typing import Any, NamedTuple, TypeVar

import msgspec

from memgate_bus import inject_headers
from memgate_core.events import ExchangeCompleted, MessageRecord, Usage, stored_time, stored_times, token_count
from memgate_core.ids import new_id
from memgate_edge.auth import Principal
from memgate_edge.chat.request import ChatRequest, storable
from memgate_edge.relay import OutboxRelay
from memgate_providers import http
from memgate_store.threads import RecordRefused, ThreadRepository

log = logging.getLogger("memgate.edge.exchange")
T = TypeVar("T")

BATCH_SIZE = 64  # exchanges recorded in one transaction, at most


class PendingExchange(msgspec.Struct):
    """What the edge knows about an exchange before the answer arrives."""

    exchange_id: str
    tenant: str
    thread_id: str
    resource_id: str
    model: str
    provider: str
    turn: list[MessageRecord]
    started_at: float

    @classmethod
    def begin(cls, request: ChatRequest, principal: Principal, provider: str) -> PendingExchange:
        assert request.memory is not None
        now = time.time()
        turn = [  # (a microsecond apart: the turn keeps its order)
            MessageRecord(id=new_id("msg"), role=m["role"], content=text, created_at=at,
                          name=storable(m["name"]) if isinstance(m.get("name"), str) else None)
            for (m, text), at in zip(request.turn, stored_times([now] * len(request.turn)), strict=True)
        ]
        return cls(new_id("exc"), principal.tenant, request.memory.thread_id, request.memory.resource_id,
                   request.model, provider, turn, now)


def usage_of(data: Any) -> Usage | None:
    usage = data.get("usage") if isinstance(data, dict) else None
    if not isinstance(usage, dict):
        return None
    return Usage(token_count(usage.get("prompt_tokens")) or 0, token_count(usage.get("completion_tokens")) or 0)


class _Waiting(NamedTuple):
    exchange: ExchangeCompleted
    traceparent: str  # its request's trace, which the observer's work joins
    recorded: asyncio.Future[int]  # how many of its messages were new


class ExchangeRecorder:
    def __init__(self, threads: ThreadRepository, relay: OutboxRelay) -> None:
        self.threads = threads
        self.relay = relay
        self._background: set[asyncio.Task[Any]] = set()
        self._waiting: list[_Waiting] = []  # finished while another recording ran: recorded together next
        self._busy = False  # a recording is under way
        self._flusher: asyncio.Task[None] | None = None

    async def finish(
        self, pending: PendingExchange, answer: str, usage: Usage | None, *, interrupted: bool = False
    ) -> None:
        now = time.time()
        # The answer must sort after the question even when both share a clock tick.
        answer_record = MessageRecord(new_id("msg"), "assistant", storable(answer), stored_time(
            now, after=pending.turn[-1].created_at if pending.turn else pending.started_at))
        await self.record([ExchangeCompleted(
            exchange_id=pending.exchange_id, tenant=pending.tenant, resource_id=pending.resource_id,
            thread_id=pending.thread_id, model=pending.model, provider=pending.provider,
            messages=[*pending.turn, answer_record], started_at=pending.started_at, completed_at=now,
            interrupted=interrupted, usage=usage,
        )])

    async def record(self, exchanges: Sequence[ExchangeCompleted], *, begun_at: float | None = None) -> list[int]:
        """Store exchanges with their outbox rows; how many messages of each were new. Raises
        if Postgres did not take them: then nothing of them is stored. Several at once (an
        import, whose request `begun_at`: its messages' dates are history) are one transaction
        of their own, all or nothing."""
        traceparent = inject_headers({}).get("traceparent", "")
        if len(exchanges) != 1 or begun_at is not None:
            counts = await self.threads.record_many(exchanges, traceparents=[traceparent] * len(exchanges),
                                                    begun_at=begun_at)
            self.relay.wake()
            return counts
        exchange = exchanges[0]
        if not self._busy:  # nothing being recorded: this one goes now, from the request itself
            self._busy = True
            try:
                return [await self.threads.record(exchange, traceparent=traceparent)]
            finally:
                self._busy = False
                self.relay.wake()
                if self._waiting:
                    self._start_flusher()
        recorded: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        recorded.add_done_callback(_retrieved)  # (its request may be gone, and not ask)
        self._waiting.append(_Waiting(exchange, traceparent, recorded))
        return [await asyncio.shield(recorded)]  # (a cancelled request's exchange is still recorded)

    def _start_flusher(self) -> None:
        self._busy = True
        self._flusher = asyncio.create_task(self._flush(), context=contextvars.Context())  # (no request's)

    async def _flush(self) -> None:
        """Record waiting exchanges, a batch per transaction, until none is left."""
        try:
            await self._flush_waiting()
        finally:
            self._busy = False

    async def _flush_waiting(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting[:BATCH_SIZE], self._waiting[BATCH_SIZE:]
            try:
                if len(batch) == 1:  # (one statement, its own transaction: one round trip)
                    counts = [await self.threads.record(batch[0].exchange, traceparent=batch[0].traceparent)]
                else:
                    counts = await self.threads.record_many([w.exchange for w in batch],
                                                            traceparents=[w.traceparent for w in batch])
            except RecordRefused as refused:  # all or nothing: the others are not to blame
                log.warning("Postgres refused a batch of %d exchanges (%s); recording them one by one",
                            len(batch), refused)
                for w in batch:  # (in order: a thread's exchanges keep theirs)
                    try:
                        _settle(w.recorded, await self.threads.record(w.exchange, traceparent=w.traceparent))
                    except Exception as exc:
                        _fail(w.recorded, exc)
            except Exception as exc:  # Postgres unreachable: each waiting response says so
                for w in batch:
                    _fail(w.recorded, exc)
            else:
                for w, count in zip(batch, counts, strict=True):
                    _settle(w.recorded, count)
            self.relay.wake()

    async def start(self) -> None:
        """Nothing to start: `stop` is what matters."""

    async def stop(self, timeout: float = 10.0) -> None:
        """Wait for recordings under way, also those of streams whose clients are gone."""
        running = {*self._background, *([self._flusher] if self._flusher else [])}
        if running:
            _, left = await asyncio.wait(running, timeout=timeout)
            for task in left:
                task.cancel()

    async def finish_shielded(self, pending: PendingExchange, answer: str, usage: Usage | None, *,
                              interrupted: bool = False) -> None:
        """`finish` that completes even if the client disconnects (cancelling us) meanwhile."""
        await asyncio.shield(self._spawn(self.finish(pending, answer, usage, interrupted=interrupted)))

    def finish_in_background(self, pending: PendingExchange, answer: str, usage: Usage | None) -> None:
        """For interrupted streams: the client is gone, but what was produced is still recorded."""
        self._spawn(self._finish_logged(pending, answer, usage))

    async def _finish_logged(self, pending: PendingExchange, answer: str, usage: Usage | None) -> None:
        try:
            await self.finish(pending, answer, usage, interrupted=True)
        except Exception:  # nobody is left to answer: say it here
            log.exception("recording interrupted exchange %s failed", pending.exchange_id)

    def close_in_background(self, response: http.Response) -> None:
        self._spawn(response.aclose())

    def _spawn(self, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task


def _settle(future: asyncio.Future[int], count: int) -> None:
    if not future.done():
        future.set_result(count)


def _fail(future: asyncio.Future[int], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)


def _retrieved(future: asyncio.Future[int]) -> None:
    if not future.cancelled():
        future.exception()
