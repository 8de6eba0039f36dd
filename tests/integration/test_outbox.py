"""No recorded exchange is lost: its outbox row waits in Postgres until JetStream has the event.

Real Postgres, a real nats-server (stopped and started again), the real relay.
"""

from __future__ import annotations

import asyncio
import time

import nats
import pytest

from memgate_bus import Bus
from memgate_bus.subjects import EXCHANGE_STREAM
from memgate_core.events import ExchangeCompleted, ExchangeRecorded, MessageRecord, exchange_decoder
from memgate_core.ids import new_id
from memgate_edge.relay import OutboxRelay
from memgate_store import Stores


def _exchange(tenant: str, n: int, text: str | None = None) -> ExchangeCompleted:
    now = time.time()
    return ExchangeCompleted(f"exc_{tenant}_{n}", tenant, "res", "thread", "fake/x", "fake",
                             [MessageRecord(new_id("msg"), "user", text or f"turn {n}", now),
                              MessageRecord(new_id("msg"), "assistant", f"answer {n}", now + 0.001)], now, now)


async def _stream_events(url: str, tenant: str) -> list[tuple[ExchangeRecorded, int]]:
    """The tenant's events in the stream, with each payload's size."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    info = await js.stream_info(EXCHANGE_STREAM)
    found = []
    if info.state.messages:
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            data = (await js.get_msg(EXCHANGE_STREAM, seq)).data
            event = exchange_decoder.decode(data)
            if event.tenant == tenant:
                found.append((event, len(data)))
    await nc.close()
    return found


async def _mine(stores: Stores, tenant: str) -> int:
    return await stores.db.pool.fetchval("SELECT count(*) FROM outbox WHERE exchange_id LIKE $1", f"exc_{tenant}_%")


async def _until(check, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


@pytest.mark.asyncio
async def test_events_wait_in_the_outbox_while_nats_is_down(stores: Stores, nats_server) -> None:  # type: ignore[no-untyped-def]
    tenant = new_id("t")
    bus = await Bus.connect(nats_server.url, name="test-outbox")
    await bus.ensure_streams()
    relay = OutboxRelay(bus, stores.outbox, interval=0.1, publish_timeout=0.5)
    await relay.start()
    try:
        assert await stores.threads.record(_exchange(tenant, 1)) == 2
        relay.wake()
        await _until(lambda: _done(stores, tenant))

        nats_server.stop()
        for n in (2, 3):  # recorded (and answered) while NATS is away
            assert await stores.threads.record(_exchange(tenant, n)) == 2
        relay.wake()
        await asyncio.sleep(0.5)
        assert await _mine(stores, tenant) == 2  # still there, not lost

        nats_server.start()
        await _until(lambda: _connected(bus))
        await _until(lambda: _done(stores, tenant))
    finally:
        await relay.stop()
        await bus.close()
    events = await _stream_events(nats_server.url, tenant)
    assert [e.exchange_id for e, _ in events] == [f"exc_{tenant}_{n}" for n in (1, 2, 3)]
    assert all(e.message_count == 2 and e.version == 2 for e, _ in events)


@pytest.mark.asyncio
async def test_an_event_refers_to_its_messages_and_stays_small(stores: Stores, bus: Bus, nats_server) -> None:  # type: ignore[no-untyped-def]
    # Larger than NATS's 1 MB payload limit: the event must not carry the text.
    tenant = new_id("t")
    huge = "word " * 300_000
    assert await stores.threads.record(_exchange(tenant, 1, huge)) == 2
    relay = OutboxRelay(bus, stores.outbox, interval=0.1)
    await relay.start()
    try:
        relay.wake()
        await _until(lambda: _done(stores, tenant))
    finally:
        await relay.stop()
    [(event, size)] = await _stream_events(nats_server.url, tenant)
    assert size < 1000
    stored = await stores.threads.exchanges(tenant, "thread", [event.exchange_id])
    assert [m.content for m in stored[event.exchange_id]] == [huge, "answer 1"]


@pytest.mark.asyncio
async def test_an_exchange_is_read_back_in_order_and_only_from_its_thread(stores: Stores) -> None:
    tenant = new_id("t")
    now = time.time()
    # Stored out of time order, two sharing a clock tick (their insertion order decides).
    messages = [MessageRecord(new_id("msg"), "user", "second", now + 1), MessageRecord(new_id("msg"), "user", "first", now),
                MessageRecord(new_id("msg"), "assistant", "third", now + 1)]
    await stores.threads.record(ExchangeCompleted(f"exc_{tenant}_1", tenant, "res", "thread", "fake/x", "fake",
                                                  messages, now, now))
    await stores.threads.record(_exchange(tenant, 2))
    ids = [f"exc_{tenant}_1", f"exc_{tenant}_2", f"exc_{tenant}_missing"]
    stored = await stores.threads.exchanges(tenant, "thread", ids)
    assert [m.content for m in stored[ids[0]]] == ["first", "second", "third"]
    assert [m.content for m in stored[ids[1]]] == ["turn 2", "answer 2"]
    assert ids[2] not in stored
    assert await stores.threads.exchanges(tenant, "another-thread", ids) == {}
    assert await stores.threads.exchanges(new_id("t"), "thread", ids) == {}


@pytest.mark.asyncio
async def test_a_republish_is_deduplicated_by_exchange_id(stores: Stores, bus: Bus, nats_server) -> None:  # type: ignore[no-untyped-def]
    tenant = new_id("t")
    exchange = _exchange(tenant, 7)
    await stores.threads.record(exchange)
    relay = OutboxRelay(bus, stores.outbox)
    assert await relay.relay_once() >= 1
    # As if the ack had been lost before the row was deleted: the same row goes out again.
    await stores.db.pool.execute("INSERT INTO outbox (exchange_id, payload) VALUES ($1, $2)",
                                 exchange.exchange_id, b'{"type":"exchange.recorded"}')
    await relay.relay_once()
    assert [e.exchange_id for e, _ in await _stream_events(nats_server.url, tenant)] == [exchange.exchange_id]


@pytest.mark.asyncio
async def test_a_claimed_row_is_skipped_by_other_relays_until_its_claim_lapses(stores: Stores) -> None:
    tenant = new_id("t")
    await stores.threads.record(_exchange(tenant, 1))
    mine = [r for r in await stores.outbox.claim(limit=10_000, hold_seconds=0.3)
            if r.exchange_id == f"exc_{tenant}_1"]
    assert len(mine) == 1  # (the first claimer, a relay that then dies)
    assert not [r for r in await stores.outbox.claim(limit=10_000) if r.exchange_id == f"exc_{tenant}_1"]
    await asyncio.sleep(0.4)
    taken_over = [r for r in await stores.outbox.claim(limit=10_000) if r.exchange_id == f"exc_{tenant}_1"]
    assert [r.id for r in taken_over] == [mine[0].id]
    await stores.outbox.delete([mine[0].id])


@pytest.mark.asyncio
async def test_nothing_is_recorded_for_a_thread_deleted_meanwhile(stores: Stores) -> None:
    tenant = new_id("t")
    exchange = _exchange(tenant, 1)
    await stores.threads.bind(tenant, "thread", "res")
    await stores.threads.delete(tenant, "thread")  # after the exchange began
    assert await stores.threads.record(exchange) == 0
    assert await _mine(stores, tenant) == 0
    assert await stores.threads.get(tenant, "thread") is None


async def _done(stores: Stores, tenant: str) -> bool:
    return await _mine(stores, tenant) == 0


async def _connected(bus: Bus) -> bool:
    return bus.connected
