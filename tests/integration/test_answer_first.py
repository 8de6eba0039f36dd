"""`memgate up` answers before it stores and publishes: lookups in the process still see the
exchange, and it reaches Postgres and JetStream afterwards (real Postgres and NATS)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import NamedTuple

import asyncpg
import nats
import pytest
from helpers import backend_waiting_for_a_lock
from opentelemetry.sdk.trace import TracerProvider

from memgate_bus import Bus, ExchangePublisher
from memgate_bus.subjects import EXCHANGE_STREAM
from memgate_context.assemble import ContextAssembler
from memgate_context.pending import PendingMessages
from memgate_core.context import ContextLookup, message_fingerprint
from memgate_core.events import ExchangeCompleted, MessageRecord
from memgate_core.ids import new_id
from memgate_edge.chat.exchange import ExchangeRecorder, PendingExchange
from memgate_store import Stores
from memgate_vectors import EdgeVectorIndex, Embedder


def _lookup(tenant: str, thread: str, client_messages: list[str] | None = None) -> ContextLookup:
    return ContextLookup(tenant, "res", thread, "what did I say?", 4000, client_messages=client_messages or [])


def _record(text: str, role: str = "user", at: float | None = None) -> MessageRecord:
    return MessageRecord(new_id("msg"), role, text, time.time() if at is None else at)


async def _recent(assembler: ContextAssembler, lookup: ContextLookup) -> list[str]:
    return [m.content for m in (await assembler.lookup(lookup)).recent_messages]


async def test_an_unstored_exchange_is_in_the_block_once(stores: Stores, index: EdgeVectorIndex) -> None:
    tenant, thread = new_id("t"), "th"
    await stores.threads.bind(tenant, thread, "res")
    earlier = _record("my cat is called Miso", at=time.time() - 60)
    await stores.threads.add_messages(tenant, thread, "res", new_id("exc"), [earlier])
    assembler = ContextAssembler(stores, index, Embedder())
    assert await _recent(assembler, _lookup(tenant, thread)) == ["my cat is called Miso"]

    exchange = new_id("exc")
    turn = [_record("I moved to Lyon"), _record("Noted: Lyon.", "assistant", at=time.time() + 0.001)]
    assembler.pending.add(tenant, thread, exchange, turn)
    expected = ["my cat is called Miso", "I moved to Lyon", "Noted: Lyon."]
    assert await _recent(assembler, _lookup(tenant, thread)) == expected

    # Stored but not yet handed over (the store's commit races the lookup): still once.
    await stores.threads.add_messages(tenant, thread, "res", exchange, turn)
    assert await _recent(assembler, _lookup(tenant, thread)) == expected
    await assembler.pending.stored(tenant, thread, exchange, inserted=True)
    assert assembler.pending.lines(tenant, thread) == []
    assert await _recent(assembler, _lookup(tenant, thread)) == expected

    # A client that resends its history gets no second copy of an unstored message either.
    other = new_id("exc")
    assembler.pending.add(tenant, thread, other, [_record("and I like jazz")])
    assert await _recent(assembler, _lookup(tenant, thread)) == [*expected, "and I like jazz"]
    resent = _lookup(tenant, thread, [message_fingerprint("user", "and I like jazz")])
    assert await _recent(assembler, resent) == expected


async def test_an_entry_whose_store_never_came_expires() -> None:
    pending = PendingMessages(keep_seconds=0.05)
    pending.add("t", "th", "exc_1", [_record("hello")])
    assert [m.item.content for m in pending.lines("t", "th")] == ["hello"]
    await asyncio.sleep(0.1)
    assert pending.lines("t", "th") == []


def test_deleted_threads_are_forgotten() -> None:
    pending = PendingMessages()
    began = time.time()
    for tenant, thread in (("t1", "a"), ("t1", "b"), ("t1", "c"), ("t2", "a")):
        pending.add(tenant, thread, new_id("exc"), [_record(f"{tenant}/{thread}", at=began)])
    pending.forget("t1", ["a", "b"])  # a delete (of a thread, or of a resource's threads)
    assert pending.lines("t1", "a") == [] and pending.lines("t1", "b") == []
    assert pending.lines("t1", "c") and pending.lines("t2", "a")
    # An exchange that was running when its thread was deleted finishes now: it stays out
    # (its store is refused by the tombstone), while one begun after the delete gets in.
    pending.add("t1", "a", new_id("exc"), [_record("in flight", at=began)])
    assert pending.lines("t1", "a") == []
    pending.add("t1", "a", new_id("exc"), [_record("new life", at=time.time() + 0.01)])
    assert [m.item.content for m in pending.lines("t1", "a")] == ["new life"]


class Recording(NamedTuple):
    """An answer-first recorder on real Postgres and NATS, and a thread to record on."""

    recorder: ExchangeRecorder
    publisher: ExchangePublisher
    pending: PendingMessages
    tenant: str
    thread: str

    def exchange(self, text: str) -> PendingExchange:
        return PendingExchange(new_id("exc"), self.tenant, self.thread, "res", "fake/x", "fake", [_record(text)],
                               time.time())


@pytest.fixture()
async def recording(stores: Stores, bus: Bus, tmp_path: Path) -> AsyncIterator[Recording]:
    publisher = ExchangePublisher(bus, tmp_path / "outbox")
    pending = PendingMessages()
    tenant, thread = new_id("t"), "th"
    await stores.threads.bind(tenant, thread, "res")
    yield Recording(ExchangeRecorder(stores.threads, publisher, unstored=pending), publisher, pending, tenant, thread)
    await publisher.stop()


async def _last_published(url: str) -> str:
    return next(iter(await _published_traces(url, 1)))


async def _published_traces(url: str, count: int) -> dict[str, str]:
    """The last `count` exchanges published: exchange id -> the trace id it carries."""
    nc = await nats.connect(url)
    try:
        last_seq = (await nc.jetstream().stream_info(EXCHANGE_STREAM)).state.last_seq
        found = {}
        for seq in range(last_seq - count + 1, last_seq + 1):
            headers = (await nc.jetstream().get_msg(EXCHANGE_STREAM, seq)).headers or {}
            found[headers["Nats-Msg-Id"]] = headers.get("traceparent", "--").split("-")[1]
        return found
    finally:
        await nc.close()


async def _contents(stores: Stores, r: Recording) -> list[str]:
    return [m.content for m in await stores.threads.messages(r.tenant, r.thread)]


async def test_finish_answers_first_then_stores_publishes_and_settles(
    stores: Stores, recording: Recording, nats_server  # type: ignore[no-untyped-def]
) -> None:
    r = recording
    exchange = r.exchange("remember the blue door")
    await r.recorder.finish(exchange, "The blue door, noted.", None)
    # Answered: the messages are visible in this process, and the event is journaled.
    assert [m.item.content for m in r.pending.lines(r.tenant, r.thread)] == ["remember the blue door",
                                                                            "The blue door, noted."]
    assert r.publisher.journal.pending() == 1

    await r.recorder.settled(r.tenant)
    assert r.pending.lines(r.tenant, r.thread) == [] and r.publisher.journal.pending() == 0
    assert await _contents(stores, r) == ["remember the blue door", "The blue door, noted."]
    assert await _last_published(nats_server.url) == exchange.exchange_id


async def test_stop_waits_for_recordings_started_while_stopping(stores: Stores, recording: Recording) -> None:
    r = recording
    # An interrupted stream: `finish` runs in the background and starts the store and
    # publish in the background in turn, after `stop` has begun waiting.
    r.recorder.finish_in_background(r.exchange("cut off mid-answer"), "partial", None)
    await r.recorder.stop()
    assert await _contents(stores, r) == ["cut off mid-answer", "partial"]
    assert r.publisher.journal.pending() == 0


async def test_a_stop_that_gives_up_leaves_no_one_waiting(stores: Stores, recording: Recording) -> None:
    r = recording
    async with thread_locked(stores, r):
        await r.recorder.finish(r.exchange("one"), "ok", None)
        await asyncio.sleep(0.05)  # its store waits for the thread
        await r.recorder.finish(r.exchange("two"), "ok", None)  # queued behind it
        await r.recorder.stop(timeout=0.1)
        began = time.monotonic()
        await r.recorder.settled(r.tenant, timeout=30)
        assert time.monotonic() - began < 10  # released, not timed out
    assert r.publisher.journal.pending() >= 1  # "two" was never published: the next start spools it


async def test_with_too_many_recordings_running_a_response_waits_for_its_own(
    stores: Stores, recording: Recording, monkeypatch: pytest.MonkeyPatch
) -> None:
    from memgate_edge.chat import exchange as exchange_module

    monkeypatch.setattr(exchange_module, "MAX_BACKGROUND", 0)  # as if 256 were still running
    r = recording
    await r.recorder.finish(r.exchange("slow down"), "Waiting.", None)
    # Back-pressure: stored, published and settled by the time `finish` returns.
    assert await _contents(stores, r) == ["slow down", "Waiting."]
    assert r.pending.lines(r.tenant, r.thread) == [] and r.publisher.journal.pending() == 0


class CountedBatches:
    """The real `add_many`, with the size of each batch it was given and what it raised."""

    def __init__(self, stores: Stores, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sizes: list[int] = []
        self.raised: list[str] = []
        self._add_many = stores.threads.add_many
        monkeypatch.setattr(stores.threads, "add_many", self)

    async def __call__(self, batch, **kwargs):  # type: ignore[no-untyped-def]
        self.sizes.append(len(batch))
        try:
            return await self._add_many(batch, **kwargs)
        except Exception as exc:
            self.raised.append(type(exc).__name__)
            raise


@asynccontextmanager
async def thread_locked(stores: Stores, r: Recording) -> AsyncIterator[asyncpg.Connection]:
    """Another transaction (on the connection yielded) holds the thread's row: stores into
    it wait until the block ends."""
    async with stores.db.pool.acquire() as other, other.transaction():
        await other.execute("SELECT 1 FROM threads WHERE tenant = $1 AND thread_id = $2 FOR NO KEY UPDATE",
                            r.tenant, r.thread)
        yield other


async def test_exchanges_answered_meanwhile_are_stored_together_in_order(
    stores: Stores, recording: Recording, monkeypatch: pytest.MonkeyPatch
) -> None:
    r = recording
    batches = CountedBatches(stores, monkeypatch)
    texts = [f"turn {n}" for n in range(20)]
    async with thread_locked(stores, r):
        for text in texts:
            await r.recorder.finish(r.exchange(text), f"ok {text}", None)
            await asyncio.sleep(0.01)  # the first one's store is under way, and waits for the thread
        assert await _contents(stores, r) == []
    await r.recorder.settled(r.tenant)
    stored = await stores.threads.messages(r.tenant, r.thread)
    assert [m.content for m in stored] == [t for text in texts for t in (text, f"ok {text}")]
    assert [m.seq for m in stored] == sorted(m.seq for m in stored)
    assert batches.sizes == [19]  # the first went alone; the others, answered meanwhile, in one transaction
    assert r.pending.lines(r.tenant, r.thread) == [] and r.publisher.journal.pending() == 0


async def test_a_lookup_sees_each_exchange_once_while_batches_are_stored(
    stores: Stores, bus: Bus, index: EdgeVectorIndex, tmp_path: Path
) -> None:
    # As in `memgate up`: the context service's own pending messages and views (which
    # trust what they were handed for a second) are the recorder's.
    assembler = ContextAssembler(stores, index, Embedder(), trust_seconds=1.0)
    publisher = ExchangePublisher(bus, tmp_path / "outbox")
    recorder = ExchangeRecorder(stores.threads, publisher, unstored=assembler.pending)
    r = Recording(recorder, publisher, assembler.pending, new_id("t"), "th")
    await stores.threads.bind(r.tenant, r.thread, "res")
    assert await _recent(assembler, _lookup(r.tenant, r.thread)) == []  # the thread's view, empty

    expected: list[str] = []
    async with thread_locked(stores, r):
        for n in range(6):
            await recorder.finish(r.exchange(f"question {n}"), f"answer {n}", None)
            expected += [f"question {n}", f"answer {n}"]
            assert await _recent(assembler, _lookup(r.tenant, r.thread)) == expected
    await recorder.settled(r.tenant)
    assert assembler.pending.lines(r.tenant, r.thread) == []
    assert await _recent(assembler, _lookup(r.tenant, r.thread)) == expected  # from the view now, once
    assembler.views.invalidate(r.tenant, r.thread)
    assert await _recent(assembler, _lookup(r.tenant, r.thread)) == expected  # and from Postgres
    await recorder.stop()
    await publisher.stop()


async def test_each_exchange_is_published_in_its_own_request_trace(
    recording: Recording, nats_server  # type: ignore[no-untyped-def]
) -> None:
    # Published together by one background task, each event still carries its own trace.
    r = recording
    tracer = TracerProvider().get_tracer("test")
    traces = {}
    for n in range(3):
        with tracer.start_as_current_span(f"request {n}") as span:
            exchange = r.exchange(f"question {n}")
            await r.recorder.finish(exchange, "ok", None)
        traces[exchange.exchange_id] = format(span.get_span_context().trace_id, "032x")
    await r.recorder.settled(r.tenant)
    assert await _published_traces(nats_server.url, 3) == traces


async def test_a_batch_postgres_refuses_is_stored_one_by_one(
    stores: Stores, recording: Recording, nats_server, monkeypatch: pytest.MonkeyPatch  # type: ignore[no-untyped-def]
) -> None:
    r = recording
    batches = CountedBatches(stores, monkeypatch)
    answered = []
    async with thread_locked(stores, r):
        # (The edge makes every text storable itself; a NUL is a way to make Postgres refuse one.)
        for text in ("goes alone", "first", "a NUL \x00 that Postgres refuses", "second"):
            answered.append(r.exchange(text))
            await r.recorder.finish(answered[-1], "ok", None)
            await asyncio.sleep(0.01)
    await r.recorder.settled(r.tenant)
    assert batches.sizes == [3] and batches.raised == ["BatchRefused"]
    assert await _contents(stores, r) == ["goes alone", "ok", "first", "ok", "second", "ok"]
    # Nothing is lost: every event was published (the observer stores the refused one, or sets it aside).
    assert r.publisher.journal.pending() == 0 and r.pending.lines(r.tenant, r.thread) == []
    assert set(await _published_traces(nats_server.url, 4)) == {e.exchange_id for e in answered}


async def test_a_batch_whose_connection_dies_is_left_to_the_observer(
    stores: Stores, recording: Recording, nats_server, monkeypatch: pytest.MonkeyPatch  # type: ignore[no-untyped-def]
) -> None:
    # Postgres going away is no refusal: storing one by one would only wait as long again,
    # per exchange. The events carry the messages to the observer, which stores them.
    r = recording
    batches = CountedBatches(stores, monkeypatch)
    answered = [r.exchange("goes alone"), r.exchange("first"), r.exchange("second")]
    async with thread_locked(stores, r) as other:
        await r.recorder.finish(answered[0], "ok", None)
        await backend_waiting_for_a_lock(other)  # (the first one's store waits for the thread)
        for exchange in answered[1:]:
            await r.recorder.finish(exchange, "ok", None)
        cut: list[int] = []
        for _ in range(2):  # the lone store, then the batch: each is cut off while it waits
            cut.append(await backend_waiting_for_a_lock(other, terminate=True, besides=cut))
    await r.recorder.settled(r.tenant)
    assert batches.sizes == [2] and batches.raised == ["ConnectionDoesNotExistError"]
    assert await _contents(stores, r) == []  # nothing stored one by one after the batch failed
    assert r.publisher.journal.pending() == 0 and r.pending.lines(r.tenant, r.thread) == []
    assert set(await _published_traces(nats_server.url, 3)) == {e.exchange_id for e in answered}


async def test_a_restart_spools_what_a_dead_edge_answered_but_never_published(
    bus: Bus, nats_server, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    now = time.time()
    event = ExchangeCompleted(new_id("exc"), "t", "res", "th", "fake/x", "fake", [_record("hi")], now, now)
    dead = ExchangePublisher(bus, tmp_path / "outbox")
    assert dead.hold(event)
    assert dead.journal._fd is not None
    os.close(dead.journal._fd)  # the process dies before publishing it (its file is closed, its lock gone)

    restarted = ExchangePublisher(bus, tmp_path / "outbox")
    restarted.start()
    assert [p.stem for p in restarted.spooled()] == [event.exchange_id]
    deadline = time.monotonic() + 10
    while restarted.spooled() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert restarted.spooled() == []
    assert await _last_published(nats_server.url) == event.exchange_id
    await restarted.stop()
