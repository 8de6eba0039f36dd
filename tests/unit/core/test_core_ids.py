"""Client id validation and memgate's own id generation."""

from __future__ import annotations

import re
import uuid

import pytest

from memgate_core.errors import InvalidRequest
from memgate_core.ids import new_id, stable_uuid, validate_client_id


@pytest.mark.parametrize("value", ["a", "0", "user-42", "th.read_1:x@y-z", "A" * 128])
def test_valid_client_ids_are_returned_unchanged(value: str) -> None:
    assert validate_client_id(value, "x-thread-id") == value


@pytest.mark.parametrize(
    "value",
    ["", "-leading-dash", ".dot", "_under", "has space", "slash/inside", "semi;colon", "é", "A" * 129, "a\tb"],
)
def test_invalid_client_ids_raise_400_naming_the_header(value: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        validate_client_id(value, "x-resource-id")
    err = info.value
    assert err.status == 400
    assert err.type == "invalid_request_error"
    assert err.code == "invalid_header"
    assert err.param == "x-resource-id"
    assert "x-resource-id" in err.message


def test_trailing_newline_is_rejected() -> None:
    with pytest.raises(InvalidRequest):
        validate_client_id("abc\n", "resource_id")


def test_new_id_has_prefix_and_hex_body() -> None:
    value = new_id("ex")
    assert re.fullmatch(r"ex_[0-9a-f]{12}[0-9a-f]{16}", value)


def test_new_ids_are_unique_and_sort_by_creation_time() -> None:
    ids = [new_id("m") for _ in range(500)]
    assert len(set(ids)) == len(ids)
    # The 12-hex-digit millisecond prefix never goes backwards.
    stamps = [i[2:14] for i in ids]
    assert stamps == sorted(stamps)


def test_new_ids_from_later_milliseconds_sort_after(monkeypatch: pytest.MonkeyPatch) -> None:
    import memgate_core.ids as ids_module

    monkeypatch.setattr(ids_module.time, "time", lambda: 1_700_000_000.000)
    early = new_id("m")
    monkeypatch.setattr(ids_module.time, "time", lambda: 1_700_000_000.001)
    late = new_id("m")
    assert early < late


def test_stable_uuid_is_deterministic_and_part_sensitive() -> None:
    a = stable_uuid("tenant", "exchange-1", "0")
    assert a == stable_uuid("tenant", "exchange-1", "0")
    assert uuid.UUID(a).version == 5
    assert a != stable_uuid("tenant", "exchange-1", "1")
    # Parts are separated, so shifting characters between parts changes the id.
    assert stable_uuid("ab", "c") != stable_uuid("a", "bc")
