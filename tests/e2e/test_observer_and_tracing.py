"""The observer's work seen from outside: idempotency under redelivery, and one trace per request."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import httpx
import nats
import openai
from helpers import observations, observer_idle, wait_for

from memgate_bus.subjects import EXCHANGE_SUBJECT
from memgate_core.events import ExchangeCompleted, MessageRecord, exchange_encoder
from memgate_store import Stores
from memgate_testing.fake_provider import FakeProvider
from memgate_testing.gateway import GatewayProcess


def _event(thread: str) -> ExchangeCompleted:
    now = time.time()
    return ExchangeCompleted(
        exchange_id=f"exc_{uuid.uuid4().hex}", tenant="default", resource_id="user-idem", thread_id=thread,
        model="fake/gpt-test", provider="fake",
        messages=[
            MessageRecord(f"msg_{uuid.uuid4().hex}", "user", "I am allergic to peanuts. My dog is called Rex.", now),
            MessageRecord(f"msg_{uuid.uuid4().hex}", "assistant", "Noted.", now + 0.001),
        ],
        started_at=now, completed_at=now + 0.01,
    )


async def _publish_twice(runtime: dict[str, str], event: ExchangeCompleted) -> None:
    stores = await Stores.connect(runtime["database_url"])
    await stores.threads.record(event)  # as the edge does: its relay publishes the event once
    await stores.close()
    nc = await nats.connect(runtime["nats_url"])
    js = nc.jetstream()
    payload = exchange_encoder.encode(event.recorded())
    # Two more deliveries of the event, as after a lost ack: distinct message ids defeat
    # JetStream's de-duplication, so the observer really sees it three times.
    await js.publish(EXCHANGE_SUBJECT, payload, headers={"Nats-Msg-Id": event.exchange_id + "-1"})
    await js.publish(EXCHANGE_SUBJECT, payload, headers={"Nats-Msg-Id": event.exchange_id + "-2"})
    await nc.close()


def test_same_event_twice_gives_one_set(gateway: GatewayProcess) -> None:
    thread = f"idem-{uuid.uuid4().hex[:6]}"
    event = _event(thread)
    asyncio.run(_publish_twice(gateway.runtime(), event))

    found = wait_for(lambda: observations(gateway, thread), timeout=15)
    observer_idle(gateway)  # the second delivery handled too (it must change nothing)
    messages = httpx.get(f"{gateway.base_url}/memory/threads/{thread}/messages", headers=gateway.headers()).json()
    assert [m["id"] for m in messages["data"]] == [m.id for m in event.messages]
    again = observations(gateway, thread)
    assert len(again) == len(found) == 2
    assert {o["text"] for o in again} == {"User stated: I am allergic to peanuts.", "User stated: My dog is called Rex."}
    assert all(o["source_message_ids"] == [event.messages[0].id] for o in again)
    # One vector per observation: search finds each exactly once.
    hits = httpx.post(f"{gateway.base_url}/memory/search", headers=gateway.headers(),
                      json={"resource_id": "user-idem", "query": "peanut allergy", "limit": 10}).json()["data"]
    assert sorted(h["observation_id"] for h in hits
                  if h["thread_id"] == thread and h["kind"] == "observation") == sorted(o["id"] for o in again)
    found_messages = [h["message_id"] for h in hits if h["thread_id"] == thread and h["kind"] == "message"]
    assert len(found_messages) == len(set(found_messages)) and event.messages[0].id in found_messages
    assert set(found_messages) <= {m.id for m in event.messages}
    assert hits[0]["text"] == "User stated: I am allergic to peanuts."


def test_edge_and_observer_spans_share_one_trace(gateway: GatewayProcess, provider: FakeProvider) -> None:
    thread = f"traced-{uuid.uuid4().hex[:6]}"
    client = openai.OpenAI(base_url=gateway.base_url, api_key=gateway.api_key, max_retries=0)
    client.chat.completions.create(model="fake/gpt-test", extra_headers={"x-thread-id": thread, "x-resource-id": "u-t"},
                                   messages=[{"role": "user", "content": "My favourite colour is teal."}])
    wait_for(lambda: observations(gateway, thread), timeout=15)

    def spans() -> list[dict]:
        if not gateway.traces_path.exists():
            return []
        lines = gateway.traces_path.read_text().split("\n")[:-1]  # not a last line still being written
        return [json.loads(line) for line in lines if line.strip()]

    def trace_of_thread() -> dict | None:
        all_spans = spans()
        roots = [s for s in all_spans if s["kind"] == "SERVER"
                 and s["attributes"].get("memgate.thread_id") == thread]
        if not roots:
            return None
        trace_id = roots[0]["trace_id"]
        names = {s["name"] for s in all_spans if s["trace_id"] == trace_id}
        return {"names": names} if {"observer.exchange", "observer.handle", "exchange.publish"} <= names else None

    found = wait_for(trace_of_thread, timeout=10)
    assert {"chat gpt-test", "context.request", "context.lookup", "exchange.publish",
            "observer.exchange", "observer.handle"} <= found["names"]
