"""Finishing an exchange: store its messages (read-your-writes) and publish the event.

Both happen before the client sees the end of the response, so a follow-up sent the
instant a response ends already finds this exchange in memory, through any edge replica.

With the context service in the same process and the only writer (`memgate up` on its
embedded Postgres, so also the only edge), the two round trips leave the response's path:
the event is journaled on disk (so it survives a crash), its messages are handed to that
context service (`UnstoredMessages`), and the store and publish run in the background,
in batches: under load, one transaction stores every exchange that queued meanwhile.
The memory API waits for them (`settled`), so it cannot tell.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Coroutine, Sequence
from typing import Any, NamedTuple, Protocol, TypeVar

import msgspec

from memgate_bus import ExchangePublisher
from memgate_core.events import ExchangeCompleted, MessageRecord, Usage
from memgate_core.ids import new_id
from memgate_edge.auth import Principal
from memgate_edge.chat.request import ChatRequest, storable
from memgate_providers import http
from memgate_store.threads import BatchRefused, NewMessages, ThreadRepository
from memgate_telemetry.metrics import EXCHANGES_PUBLISHED

log = logging.getLogger("memgate.edge.exchange")
T = TypeVar("T")

MAX_BACKGROUND = 256  # recordings running after their responses; more, and responses wait for theirs
BATCH_SIZE = 64  # exchanges stored in one transaction, at most


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
        turn = [
            MessageRecord(id=new_id("msg"), role=m["role"], content=text, created_at=now,
                          name=m.get("name") if isinstance(m.get("name"), str) else None)
            for m, text in request.turn
        ]
        return cls(new_id("exc"), principal.tenant, request.memory.thread_id, request.memory.resource_id,
                   request.model, provider, turn, now)


def usage_of(data: Any) -> Usage | None:
    usage = data.get("usage") if isinstance(data, dict) else None
    if not isinstance(usage, dict):
        return None
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    # Usage is informational: a provider sending odd values must not break the answer.
    return Usage(prompt if isinstance(prompt, int) else 0, completion if isinstance(completion, int) else 0)


class _Queued(NamedTuple):
    """An exchange answered in `memgate up`, waiting to be stored with others."""

    event: ExchangeCompleted
    context: contextvars.Context  # its request's (the publish belongs to that trace)
    recorded: asyncio.Future[None]  # done once stored and published


def _release(batch: list[_Queued]) -> None:
    """Whoever waits for these exchanges to be recorded need wait no longer."""
    for q in batch:
        if not q.recorded.done():
            q.recorded.set_result(None)


class UnstoredMessages(Protocol):
    """Where lookups in this process find messages until they are stored."""

    def add(self, tenant: str, thread_id: str, exchange_id: str, messages: Sequence[MessageRecord]) -> None: ...

    async def stored(self, tenant: str, thread_id: str, exchange_id: str, *, inserted: bool) -> None: ...

    def forget(self, tenant: str, thread_ids: Sequence[str]) -> None: ...


class ExchangeRecorder:
    def __init__(self, threads: ThreadRepository, publisher: ExchangePublisher, *,
                 unstored: UnstoredMessages | None = None) -> None:
        """`unstored`: the in-process context service's; with it, storing and publishing
        happen after the response (see the module's docstring)."""
        self.threads = threads
        self.publisher = publisher
        self.unstored = unstored
        self._background: set[asyncio.Task[Any]] = set()
        self._queue: list[_Queued] = []  # answered, not yet stored
        self._flusher: asyncio.Task[None] | None = None
        self._recording: dict[str, set[asyncio.Future[None]]] = {}  # tenant -> recordings after their responses

    async def finish(
        self, pending: PendingExchange, answer: str, usage: Usage | None, *, interrupted: bool = False
    ) -> None:
        now = time.time()
        # The answer must sort after the question even when both share a clock tick.
        answer_record = MessageRecord(new_id("msg"), "assistant", storable(answer),
                                      max(now, pending.started_at + 1e-6))
        event = ExchangeCompleted(
            exchange_id=pending.exchange_id, tenant=pending.tenant, resource_id=pending.resource_id,
            thread_id=pending.thread_id, model=pending.model, provider=pending.provider,
            messages=[*pending.turn, answer_record], started_at=pending.started_at, completed_at=now,
            interrupted=interrupted, usage=usage,
        )
        if self.unstored is None or not self.publisher.hold(event):
            await self.record(event)
            return
        self.unstored.add(event.tenant, event.thread_id, event.exchange_id, event.messages)
        recorded: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append(_Queued(event, contextvars.copy_context(), recorded))
        self._track(event.tenant, recorded)
        if self._flusher is None or self._flusher.done():
            self._flusher = self._spawn(self._flush(), context=contextvars.Context())  # (no request's)
        if sum(map(len, self._recording.values())) > MAX_BACKGROUND:
            # Postgres or NATS falling behind: back-pressure, this response waits for its own.
            await asyncio.shield(recorded)

    async def record(self, event: ExchangeCompleted) -> None:
        """Store and publish one exchange; both are done when this returns (a chat
        response's end waits for it, and so does an import's answer)."""
        stored, published = await asyncio.gather(self._store(event), self.publisher.publish(event))
        if self.unstored is not None:  # (journal refused, or an import) its view must read the database again
            await self.unstored.stored(event.tenant, event.thread_id, event.exchange_id, inserted=stored)
        EXCHANGES_PUBLISHED.labels("published" if published else "spooled").inc()

    async def _flush(self) -> None:
        """Record queued exchanges, a batch at a time, until none is left: the batch's
        publishes start together, its store is one transaction, and the next batch's store
        need not wait for this batch's acks."""
        while self._queue:
            batch, self._queue = self._queue[:BATCH_SIZE], self._queue[BATCH_SIZE:]
            publishes = [self._spawn(self.publisher.publish(q.event, held=True), context=q.context)
                         for q in batch]  # (each in its request's trace)
            try:
                await self._hand_over(batch, await self._store_batch([q.event for q in batch]))
            except asyncio.CancelledError:  # shutdown: the observer stores them from the events
                _release(batch)
                raise
            self._spawn(self._settle_when_published(batch, publishes))

    async def _hand_over(self, batch: list[_Queued], inserted: list[bool]) -> None:
        """The batch's messages leave the unstored ones: inserted now (the view can take
        them as they are), or not (already stored by the observer, refused for a deleted
        thread, or failed: the observer stores them), and the view reads the database."""
        assert self.unstored is not None
        for q, was_inserted in zip(batch, inserted, strict=True):
            try:
                await self.unstored.stored(q.event.tenant, q.event.thread_id, q.event.exchange_id,
                                           inserted=was_inserted)
            except Exception:
                log.exception("handing exchange %s over to its view failed", q.event.exchange_id)

    async def _settle_when_published(self, batch: list[_Queued], publishes: list[asyncio.Task[bool]]) -> None:
        """The batch is stored; once published too, its exchanges are recorded."""
        outcomes = await asyncio.gather(*publishes, return_exceptions=True)
        for q, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                log.error("publishing exchange %s failed (%r); the journal keeps it for the next start",
                          q.event.exchange_id, outcome)
            else:
                EXCHANGES_PUBLISHED.labels("published" if outcome else "spooled").inc()
        _release(batch)

    async def settled(self, tenant: str, timeout: float = 5.0) -> None:
        """Wait for the tenant's exchanges still being recorded after their responses, so
        that the memory API, read right after a response, shows them (read-your-writes)."""
        recordings = self._recording.get(tenant)
        if recordings:
            await asyncio.wait(set(recordings), timeout=timeout)

    def _track(self, tenant: str, recording: asyncio.Future[None]) -> None:
        recordings = self._recording.setdefault(tenant, set())
        recordings.add(recording)

        def done(finished: asyncio.Future[None]) -> None:
            recordings.discard(finished)
            if not recordings and self._recording.get(tenant) is recordings:
                del self._recording[tenant]

        recording.add_done_callback(done)

    def forget(self, tenant: str, thread_ids: Sequence[str]) -> None:
        """Deleted threads: their unstored messages must not show up any more (the stores
        are refused by the threads' tombstones)."""
        if self.unstored is not None:
            self.unstored.forget(tenant, thread_ids)

    async def start(self) -> None:
        """Nothing to start: `stop` is what matters."""

    async def stop(self, timeout: float = 10.0) -> None:
        """Wait for background stores and publishes, also those they start meanwhile; cancel
        what is left after `timeout` (the journal, or the observer, covers it)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self._background:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                log.warning("cancelling %d background task(s) still running at shutdown, %d exchange(s) queued; "
                            "the journal has them", len(self._background), len(self._queue))
                for task in self._background:
                    task.cancel()
                _release(self._queue)
                await asyncio.wait(set(self._background), timeout=1)
                return
            await asyncio.wait(set(self._background), timeout=left)

    async def _store(self, event: ExchangeCompleted) -> bool:
        """Whether this store inserted the messages."""
        try:
            return await self.threads.add_messages(
                event.tenant, event.thread_id, event.resource_id, event.exchange_id, event.messages,
                interrupted=event.interrupted, durable=False,  # JetStream holds the durable copy
            ) > 0
        except Exception:
            log.exception("storing messages of exchange %s failed; the observer will store them", event.exchange_id)
            return False

    async def _store_batch(self, events: list[ExchangeCompleted]) -> list[bool]:
        """Whether this store inserted each exchange's messages."""
        if len(events) == 1:
            return [await self._store(events[0])]
        try:
            counts = await self.threads.add_many(
                [NewMessages(e.tenant, e.thread_id, e.resource_id, e.exchange_id, e.messages, e.interrupted)
                 for e in events],
                durable=False,  # JetStream holds the durable copy
            )
        except BatchRefused as refused:  # all or nothing: find out which one it was
            log.warning("Postgres refused a batch of %d exchanges (%s); storing them one by one",
                        len(events), refused)
            return [await self._store(event) for event in events]  # in order: a thread's seqs follow it
        except Exception:
            log.exception("storing a batch of %d exchanges failed; the observer will store them", len(events))
            return [False] * len(events)
        return [count > 0 for count in counts]

    async def finish_shielded(self, pending: PendingExchange, answer: str, usage: Usage | None, *,
                              interrupted: bool = False) -> None:
        """`finish` that completes even if the client disconnects (cancelling us) meanwhile."""
        await asyncio.shield(self._spawn(self.finish(pending, answer, usage, interrupted=interrupted)))

    def finish_in_background(self, pending: PendingExchange, answer: str, usage: Usage | None) -> None:
        """For interrupted streams: the client is gone, but what was produced is still recorded."""
        self._spawn(self.finish(pending, answer, usage, interrupted=True))

    def close_in_background(self, response: http.Response) -> None:
        self._spawn(response.aclose())

    def _spawn(self, work: Coroutine[Any, Any, T], *, context: contextvars.Context | None = None) -> asyncio.Task[T]:
        task = asyncio.create_task(work, context=context)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task
