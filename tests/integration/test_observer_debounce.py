"""The observer's consumer against real NATS JetStream and Postgres: a burst of exchanges on
one thread is observed in one LLM call, and each delivery is acked only after the commit."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from memgate_bus import Bus
from memgate_bus.subjects import EXCHANGE_STREAM, EXCHANGE_SUBJECT, OBSERVER_DURABLE
from memgate_core.events import ExchangeCompleted, MessageRecord, exchange_encoder
from memgate_observer.consumer import ExchangeConsumer
from memgate_observer.handler import ExchangeHandler
from memgate_observer.llm import LLMObserver
from memgate_observer.prompt import TITLE_PROMPT
from memgate_providers import ProviderClient, ProviderRegistry, Timeouts
from memgate_store import Stores
from memgate_testing.fake_provider import FakeProvider
from memgate_vectors import EdgeVectorIndex, Embedder

NOW = datetime(2024, 5, 1, 9, 15, tzinfo=UTC).timestamp()


class Model:
    """Plays the Observer LLM: records each request, may hold it until released."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.hold: Callable[[], None] = lambda: None

    def held(self) -> threading.Event:
        """From now on each call waits (up to 10 s) until the returned event is set."""
        release = threading.Event()
        self.hold = lambda: release.wait(10)
        return release

    def __call__(self, body: dict[str, Any]) -> str:
        if body["messages"][0]["content"] == TITLE_PROMPT:  # a thread's title: not an observer call
            return "A title"
        self.bodies.append(body)
        self.hold()
        lines = body["messages"][1]["content"].splitlines()
        messages = [json.loads(line) for line in lines[lines.index("NEW MESSAGES:") + 1:]]
        facts = [f"- [high] {m['sent'][11:16]} User said: {m['text']} {{{m['id']}}}" for m in messages if m["role"] == "user"]
        return "\n".join([f"## {messages[0]['sent'][:10]}", *facts])


@pytest.fixture()
def model() -> Iterator[tuple[FakeProvider, Model]]:
    script = Model()
    with FakeProvider(responder=script) as fake:
        yield fake, script


@pytest.fixture()
async def handler(stores: Stores, index: EdgeVectorIndex, model: tuple[FakeProvider, Model]) -> AsyncIterator[ExchangeHandler]:
    registry = ProviderRegistry.from_env({"MEMGATE_PROVIDER_FAKE_BASE_URL": model[0].base_url,
                                          "MEMGATE_PROVIDER_FAKE_API_KEY": "sk-fake"})
    client = ProviderClient(registry, timeouts=Timeouts(connect=2.0, first_byte=20.0))
    yield ExchangeHandler(stores, index, Embedder(), LLMObserver(client, "fake/observer"),
                          activation_tokens=30_000, keep_raw_tokens=4_000)
    await client.close()


class RecordingConsumer(ExchangeConsumer):
    """Counts deliveries, and checks at every ack that the acked exchanges' observations are committed."""

    def __init__(self, *args: Any, stores: Stores, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.stores = stores
        self.acks: list[tuple[list[str], bool]] = []
        self.deliveries = 0

    async def _accept(self, msg):  # type: ignore[no-untyped-def]
        self.deliveries += 1
        await super()._accept(msg)

    async def _settle(self, batch, *, ok, delay=None, terminate=False):  # type: ignore[no-untyped-def]
        if ok:
            ids = [d.event.exchange_id for d in batch]
            committed = await self.stores.observations.observed(batch[0].event.tenant, ids) == set(ids)
            self.acks.append((ids, committed))
        await super()._settle(batch, ok=ok, delay=delay, terminate=terminate)


def exchange(thread: str, text: str, at: float) -> ExchangeCompleted:
    return ExchangeCompleted(
        exchange_id=f"exc_{uuid.uuid4().hex}", tenant="t-debounce", resource_id="res", thread_id=thread,
        model="fake/x", provider="fake", messages=[MessageRecord(f"msg_{uuid.uuid4().hex}", "user", text, at)],
        started_at=at, completed_at=at + 0.5,
    )


async def eventually(condition: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        await asyncio.sleep(0.02)
    raise AssertionError(f"condition not met within {timeout}s")


async def ack_pending(bus: Bus) -> tuple[int, int]:
    info = await bus.js.consumer_info(EXCHANGE_STREAM, OBSERVER_DURABLE)
    return info.num_ack_pending, info.num_redelivered


async def publish(bus: Bus, stores: Stores, *events: ExchangeCompleted, gap: float = 0.05) -> None:
    """Record each exchange (as the edge does) and publish its event (as the relay does)."""
    for event in events:
        await stores.threads.record(event)
        await bus.js.publish(EXCHANGE_SUBJECT, exchange_encoder.encode(event.recorded()),
                             headers={"Nats-Msg-Id": event.exchange_id})
        await asyncio.sleep(gap)


async def test_a_burst_is_observed_in_one_call_and_acked_only_after_commit(bus, stores, handler, model) -> None:  # type: ignore[no-untyped-def]
    _, script = model
    release = script.held()
    # A debounce far longer than the 0.05 s gaps, so a loaded machine does not split the burst.
    consumer = RecordingConsumer(bus, handler, debounce=1.5, stores=stores)
    await consumer.start()
    try:
        burst = [exchange("burst", f"Fact number {i} is about topic {i}.", NOW + i) for i in range(3)]
        other = exchange("calm", "I live in a quiet thread.", NOW)
        await publish(bus, stores, burst[0], other, burst[1], burst[2])
        await eventually(lambda: script.bodies)  # (the held responder blocks the fake server: one at a time)
        # The model is working: every delivery is still pending, none acked.
        assert (await ack_pending(bus))[0] == 4
        release.set()
        await eventually(lambda: len(consumer.acks) == 2)
        await eventually(lambda: _no_pending(bus))
    finally:
        release.set()
        await consumer.stop()
    # One observer call per thread; the burst's call held all three exchanges' messages.
    batches = {len(b["messages"][1]["content"].split("NEW MESSAGES:")[1].strip().splitlines()) for b in script.bodies}
    assert batches == {3, 1}
    assert sorted(len(ids) for ids, _ in consumer.acks) == [1, 3]
    assert all(committed for _, committed in consumer.acks)
    found = await stores.observations.for_thread("t-debounce", "burst")
    assert [o.source_message_ids for o in found] == [[e.messages[0].id] for e in burst]
    assert await ack_pending(bus) == (0, 0)


async def test_what_is_fetched_while_stopping_is_left_for_redelivery(bus, stores, handler, model) -> None:  # type: ignore[no-untyped-def]
    """A stop waits for the batch under way; a delivery fetched meanwhile is nakked for
    redelivery, not handled by a flusher nobody waits for (it ran on past the stop)."""
    _, script = model
    release = script.held()
    consumer = FetchWatchingConsumer(bus, handler, debounce=0.05, stores=stores)
    await consumer.start()
    try:
        await publish(bus, stores, exchange("under-way", "I am observed as the stop begins.", NOW))
        await eventually(lambda: script.bodies)  # its observer call is under way (held)
        consumer.fetch_began.clear()
        await asyncio.wait_for(consumer.fetch_began.wait(), 5)  # a fetch has just begun: it waits up to 1 s
        stopping = asyncio.create_task(consumer.stop())
        await asyncio.sleep(0)
        await publish(bus, stores, exchange("late", "I arrive while the observer stops.", NOW + 1))
        await eventually(lambda: _delivered(bus, 2))  # to that fetch
    finally:
        release.set()
    await stopping
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("observer-thread:")]  # no stray flusher
    assert consumer.deliveries == 1 and len(script.bodies) == 1  # the late one: not handled here
    assert [len(ids) for ids, _ in consumer.acks] == [1]
    assert (await ack_pending(bus))[0] == 1  # the late one: nakked, waiting for its redelivery


class FetchWatchingConsumer(RecordingConsumer):
    """Says when each fetch begins."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.fetch_began = asyncio.Event()

    async def _run(self, sub):  # type: ignore[no-untyped-def]
        began = self.fetch_began

        class Watched:
            async def fetch(self, *args: Any, **kw: Any) -> Any:
                began.set()
                return await sub.fetch(*args, **kw)

        await super()._run(Watched())


async def _delivered(bus: Bus, count: int) -> bool:
    return (await bus.js.consumer_info(EXCHANGE_STREAM, OBSERVER_DURABLE)).delivered.consumer_seq >= count


async def _no_pending(bus: Bus) -> bool:
    return (await ack_pending(bus))[0] == 0


async def test_in_progress_keeps_a_slow_batch_from_being_redelivered(bus, stores, handler, model) -> None:  # type: ignore[no-untyped-def]
    _, script = model
    script.hold = lambda: time.sleep(2.5)  # longer than the ack deadline
    consumer = RecordingConsumer(bus, handler, debounce=0.05, ack_wait=1.0, stores=stores)
    await consumer.start()
    try:
        event = exchange("slow", "I am a slow fact to observe.", NOW)
        await publish(bus, stores, event)
        await eventually(lambda: consumer.acks, timeout=15)
        await asyncio.sleep(1.2)  # past the ack deadline once more: nothing comes back
    finally:
        await consumer.stop()
    assert len(script.bodies) == 1
    assert consumer.deliveries == 1  # never redelivered while it was being worked on
    assert await ack_pending(bus) == (0, 0)


async def test_a_failed_batch_is_nakked_and_observed_on_redelivery(bus, stores, handler, model) -> None:  # type: ignore[no-untyped-def]
    fake, script = model
    fake.set_behavior(fail_status=503, fail_times=1)
    # An outage is only waited out: even a consumer that would set an exchange aside at its
    # first failure of another kind keeps this one.
    consumer = ExchangeConsumer(bus, handler, debounce=0.05, max_deliveries=1, set_aside_after=0)
    await consumer.start()
    try:
        event = exchange("flaky", "I survive a provider outage.", NOW)
        await publish(bus, stores, event)
        await eventually(lambda: stores.observations.observed("t-debounce", [event.exchange_id]), timeout=15)
    finally:
        await consumer.stop()
    [found] = await stores.observations.for_thread("t-debounce", "flaky")
    assert found.text == "User said: I survive a provider outage."
    assert len(script.bodies) == 1  # the failed request never reached the responder
    assert await stores.observations.failures("t-debounce", "flaky") == []


async def test_a_poison_exchange_is_set_aside_and_holds_back_nothing(bus, stores, handler, model,  # type: ignore[no-untyped-def]
                                                                    monkeypatch) -> None:
    _, _script = model
    good = [exchange("poison", f"Good fact number {i}.", NOW + i) for i in range(3)]
    poison = exchange("poison", "Bad fact here.", NOW + 0.5)
    observe = handler.handle_batch

    async def refusing(events):  # type: ignore[no-untyped-def]
        # An exchange that fails every time, not for an outage (say, one that breaks the observer).
        if any(e.exchange_id == poison.exchange_id for e in events):
            raise ValueError("this exchange cannot be observed")
        return await observe(events)

    monkeypatch.setattr(handler, "handle_batch", refusing)
    consumer = RecordingConsumer(bus, handler, debounce=0.3, max_deliveries=2, set_aside_after=0, stores=stores)
    await consumer.start()
    try:
        await publish(bus, stores, good[0], poison, good[1])  # one batch: the poison must not sink the others
        await eventually(lambda: stores.observations.observed("t-debounce", [good[0].exchange_id,
                                                                              good[1].exchange_id]), timeout=15)
        # Redelivered after its retry delay, failing again: set aside (terminated), not retried.
        await eventually(lambda: _no_pending(bus), timeout=15)
        assert await stores.observations.observed("t-debounce", [poison.exchange_id]) == {poison.exchange_id}
        await publish(bus, stores, good[2])  # the thread is not blocked
        await eventually(lambda: stores.observations.observed("t-debounce", [good[2].exchange_id]), timeout=15)
    finally:
        await consumer.stop()
    assert consumer.deliveries == 5  # three, the poison's redelivery, and the later one
    [failure] = await stores.observations.failures("t-debounce", "poison")
    assert failure.exchange_ids == [poison.exchange_id] and "set aside after 2 failures" in failure.error
    facts = [o.text for o in await stores.observations.for_thread("t-debounce", "poison")]
    assert facts == ["User said: Good fact number 0.", "User said: Good fact number 1.",
                     "User said: Good fact number 2."]
    assert await ack_pending(bus) == (0, 0)



async def test_an_exchange_the_provider_always_refuses_is_set_aside(bus, stores, handler, model,  # type: ignore[no-untyped-def]
                                                                   monkeypatch) -> None:
    """A provider that answers 5xx for one exchange while others are observed is not down:
    that exchange is set aside like any other that cannot be observed (it was retried for ever)."""
    answer = Model.__call__

    def refusing(self: Model, body: dict[str, Any]) -> str:
        if "Poisonous words" in body["messages"][1]["content"]:
            raise RuntimeError("the provider fails on this text")  # the fake provider answers 500
        return answer(self, body)

    monkeypatch.setattr(Model, "__call__", refusing)
    monkeypatch.setattr("memgate_observer.consumer.RETRY_DELAYS", (0.2,))
    good = [exchange("refused", f"Good fact number {i}.", NOW + i) for i in range(2)]
    poison = exchange("refused", "Poisonous words.", NOW + 0.5)
    consumer = RecordingConsumer(bus, handler, debounce=0.3, max_deliveries=2, set_aside_after=0, stores=stores)
    await consumer.start()
    try:
        await publish(bus, stores, good[0], poison, good[1])
        # Tried together three times (a provider outage is waited out), then one at a time:
        # the good ones are observed, the poison is refused again and set aside.
        await eventually(lambda: _no_pending(bus), timeout=20)
    finally:
        await consumer.stop()
    assert await stores.observations.observed("t-debounce", [e.exchange_id for e in good]) == {
        e.exchange_id for e in good}
    [failure] = await stores.observations.failures("t-debounce", "refused")
    assert failure.exchange_ids == [poison.exchange_id] and "set aside after 2 failures" in failure.error
    assert await ack_pending(bus) == (0, 0)
