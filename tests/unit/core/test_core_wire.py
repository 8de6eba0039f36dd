"""msgspec wire formats: exchange events and the context lookup contract."""

from __future__ import annotations

import msgspec
import pytest

from memgate_core.context import (
    ContextBlock,
    ContextFailure,
    ContextLookup,
    MessageItem,
    ObservationItem,
    block_decoder,
    lookup_decoder,
    lookup_encoder,
)
from memgate_core.events import ExchangeCompleted, MessageRecord, Usage, exchange_decoder, exchange_encoder


def _event(**kw: object) -> ExchangeCompleted:
    fields: dict = dict(
        exchange_id="ex_1", tenant="t", resource_id="r", thread_id="th", model="openai/gpt-4o", provider="openai",
        messages=[MessageRecord("m1", "user", "hi", 1.5), MessageRecord("m2", "assistant", "hello", 2.5, name="bot")],
        started_at=1.0, completed_at=3.0,
    )
    fields.update(kw)
    return ExchangeCompleted(**fields)


def test_exchange_event_round_trip() -> None:
    event = _event(usage=Usage(3, 4), interrupted=True).recorded()
    assert exchange_decoder.decode(exchange_encoder.encode(event)) == event


def test_exchange_event_is_tagged_versioned_and_carries_no_text() -> None:
    data = msgspec.json.decode(exchange_encoder.encode(_event().recorded()))
    assert data["type"] == "exchange.recorded"
    assert data["version"] == 2
    assert data["message_count"] == 2 and "messages" not in data
    assert "hi" not in exchange_encoder.encode(_event().recorded()).decode()


def test_exchange_event_optional_fields_default() -> None:
    data = msgspec.json.decode(exchange_encoder.encode(_event().recorded()))
    for key in ("interrupted", "usage", "version"):
        del data[key]
    event = exchange_decoder.decode(msgspec.json.encode(data))
    assert event.interrupted is False and event.usage is None and event.version == 2


def test_exchange_event_with_wrong_tag_is_rejected() -> None:
    data = msgspec.json.decode(exchange_encoder.encode(_event().recorded()))
    data["type"] = "exchange.completed"  # the first version, which carried the messages
    with pytest.raises(msgspec.ValidationError):
        exchange_decoder.decode(msgspec.json.encode(data))


def test_lookup_round_trip() -> None:
    lookup = ContextLookup("t", "r", "th", "what is my name?", 500)
    assert lookup_decoder.decode(lookup_encoder.encode(lookup)) == lookup


def test_block_decoder_decodes_a_block() -> None:
    obs = ObservationItem("o1", "th", "User's name is Dana", "high", "2024-05-01")
    block = ContextBlock(
        thread_observations=[obs], related_observations=[obs, obs],
        recent_messages=[MessageItem("m1", "user", "hi", 10.0)], text="<memgate_memory>...", tokens=7, lookup_ms=1.25,
    )
    decoded = block_decoder.decode(lookup_encoder.encode(block))
    assert isinstance(decoded, ContextBlock)
    assert decoded == block
    assert decoded.observation_count == 3


def test_block_decoder_decodes_a_failure() -> None:
    decoded = block_decoder.decode(lookup_encoder.encode(ContextFailure("database down")))
    assert isinstance(decoded, ContextFailure)
    assert decoded.error == "database down"
    assert msgspec.json.decode(lookup_encoder.encode(ContextFailure("x")))["type"] == "failure"


def test_block_decoder_rejects_unknown_tag() -> None:
    with pytest.raises(msgspec.ValidationError):
        block_decoder.decode(b'{"type": "other", "error": "x"}')
