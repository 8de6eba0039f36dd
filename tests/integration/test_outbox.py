"""No completed exchange is lost when NATS is down: the edge spools and republishes."""

from __future__ import annotations

import time

import nats
import pytest

from memgate_bus import Bus, ExchangePublisher
from memgate_bus.subjects import EXCHANGE_STREAM
from memgate_core.events import ExchangeCompleted, MessageRecord, exchange_decoder


def _event(n: int) -> ExchangeCompleted:
    now = time.time()
    return ExchangeCompleted(f"exc_outbox_{n}", "default", "res", "thread", "fake/x", "fake",
                             [MessageRecord(f"msg_{n}", "user", f"turn {n}", now)], now, now)


async def _stream_events(url: str) -> list[ExchangeCompleted]:
    nc = await nats.connect(url)
    js = nc.jetstream()
    info = await js.stream_info(EXCHANGE_STREAM)
    events = [exchange_decoder.decode((await js.get_msg(EXCHANGE_STREAM, seq)).data)
              for seq in range(info.state.first_seq, info.state.last_seq + 1)] if info.state.messages else []
    await nc.close()
    return events


@pytest.mark.asyncio
async def test_spool_while_nats_is_down_then_republish(nats_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    bus = await Bus.connect(nats_server.url, name="test-outbox")
    await bus.ensure_streams()
    publisher = ExchangePublisher(bus, tmp_path / "outbox", publish_timeout=0.5)
    assert await publisher.publish(_event(1)) is True

    nats_server.stop()
    assert await publisher.publish(_event(2)) is False
    assert await publisher.publish(_event(3)) is False
    assert [p.stem for p in publisher.spooled()] == ["exc_outbox_2", "exc_outbox_3"]

    # A new process (a restarted edge) finds the spool on disk.
    nats_server.start()
    deadline = time.monotonic() + 10
    while not bus.connected and time.monotonic() < deadline:
        await __import__("asyncio").sleep(0.05)
    restarted = ExchangePublisher(bus, tmp_path / "outbox")
    assert await restarted.drain_spool() == 2
    assert restarted.spooled() == []
    # A second drain (e.g. after a lost ack) must not duplicate anything.
    assert await restarted.drain_spool() == 0

    events = await _stream_events(nats_server.url)
    assert [e.exchange_id for e in events] == ["exc_outbox_1", "exc_outbox_2", "exc_outbox_3"]
    await bus.close()


@pytest.mark.asyncio
async def test_republish_is_deduplicated_by_exchange_id(nats_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    bus = await Bus.connect(nats_server.url, name="test-dedupe")
    await bus.ensure_streams()
    publisher = ExchangePublisher(bus, tmp_path / "outbox")
    event = _event(7)
    await publisher.publish(event)
    publisher._spool(event.exchange_id, b'{"type":"exchange.completed"}', {})  # as if the ack had been lost
    await publisher.drain_spool()
    assert [e.exchange_id for e in await _stream_events(nats_server.url)] == ["exc_outbox_7"]
    await bus.close()
