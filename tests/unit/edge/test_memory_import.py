"""Parsing an import request and grouping its messages into exchanges (no gateway)."""

from __future__ import annotations

import json
from datetime import UTC

import pytest

from memgate_core.errors import InvalidRequest
from memgate_core.events import MessageRecord
from memgate_edge.memory.imports import exchange_event, group_exchanges, parse_import

NOW = 1_800_000_000.0


def _parse(body: object) -> tuple[str | None, list[MessageRecord]]:
    return parse_import(json.dumps(body).encode(), now=NOW)


def test_times_are_rfc3339_or_unix_seconds_and_default_to_now() -> None:
    resource, records = _parse({"resource_id": "u-1", "messages": [
        {"role": "user", "content": "a", "created_at": "2023-05-08T13:56:00Z"},
        {"role": "assistant", "content": "b", "created_at": "2023-05-08T15:56:00+02:00"},
        {"role": "user", "content": "c", "created_at": 1_700_000_000},
        {"role": "user", "content": "d"},
    ]})
    assert resource == "u-1"
    assert [r.created_at for r in records] == [1683554160.0, 1683554160.0 + 1e-6, 1_700_000_000.0, NOW]
    assert len({r.id for r in records}) == 4


def test_nul_becomes_replacement_character() -> None:
    _, records = _parse({"messages": [{"role": "user", "content": "a\u0000b"}]})
    assert records[0].content == "a\ufffdb"


@pytest.mark.parametrize("messages", [
    [],
    [{"role": "system", "content": "x"}],
    [{"role": "user", "content": "   "}],
    [{"role": "user", "content": "x", "created_at": NOW + 61}],
    [{"role": "user", "content": "x", "created_at": "not a time"}],
    [{"role": "user", "content": "x", "created_at": 2.0}, {"role": "user", "content": "y", "created_at": 1.0}],
    [{"role": "user", "content": "x" * 600_000}, {"role": "user", "content": "y" * 600_000}],
])
def test_bad_messages_are_refused(messages: list[dict[str, object]]) -> None:
    with pytest.raises(InvalidRequest):
        _parse({"messages": messages})


def test_exchanges_are_grouped_as_chat_makes_them() -> None:
    _, records = _parse({"messages": [{"role": role, "content": role} for role in
                                      ["assistant", "user", "user", "assistant", "assistant", "user", "user"]]})
    groups = group_exchanges(records)
    assert [[r.role for r in g] for g in groups] == [
        ["assistant"], ["user", "user", "assistant"], ["assistant"], ["user", "user"]]
    event = exchange_event("t", "th", "res", groups[1])
    assert (event.model, event.provider, event.started_at, event.completed_at) == (
        "import", "import", groups[1][0].created_at, groups[1][-1].created_at)


def test_messages_sent_at_one_time_keep_their_order_at_postgres_precision() -> None:
    """Each nudged time is a distinct microsecond, as Postgres stores it, whatever `now` is."""
    from datetime import datetime

    for now in (1796536871.1234565, 1796536871.9999995, 1_700_000_000.25, 1796536871.0000005):
        _, records = parse_import(json.dumps({"messages": [{"role": "user", "content": str(i)}
                                                            for i in range(50)]}).encode(), now=now)
        stored = [datetime.fromtimestamp(r.created_at, UTC) for r in records]
        assert stored == sorted(stored) and len(set(stored)) == 50, now
