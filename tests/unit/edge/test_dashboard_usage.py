"""The Usage page's sums and the Logs page's filter, on plain values."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from memgate_edge.dashboard.logs import log_filter
from memgate_edge.dashboard.usage import MOST_SERIES, days_of, money, per_day, usage_csv
from memgate_store.request_log import DailyUsage


def _row(day: int, model: str, requests: int, cost: float = 0.0) -> DailyUsage:
    return DailyUsage(day=date(2026, 12, day), model=model, key_id="key_1", key_name="ci", requests=requests, errors=0,
                      input_tokens=10 * requests, output_tokens=requests, memory_tokens=4 * requests, cost_usd=cost,
                      byok_cost_usd=0.0)


def test_series_beyond_the_most_shown_are_summed_as_other() -> None:
    rows = [_row(1, f"fake/m{i}", requests=100 - i) for i in range(MOST_SERIES + 3)] + [_row(2, "fake/m0", 5)]
    series = per_day(rows, lambda r: r.requests, lambda r: r.model)
    assert len(series) == MOST_SERIES and next(iter(series)) == "fake/m0"
    assert series["fake/m0"] == {date(2026, 12, 1): 100, date(2026, 12, 2): 5}
    folded = range(MOST_SERIES - 1, MOST_SERIES + 3)
    assert series["other"] == {date(2026, 12, 1): sum(100 - i for i in folded)}


def test_ranges_end_today_and_csv_has_every_row() -> None:
    start, _, days = days_of("7d", now=datetime(2026, 12, 6, 15, 30, tzinfo=UTC))
    assert start == datetime(2026, 11, 30, tzinfo=UTC) and days[-1] == date(2026, 12, 6) and len(days) == 7
    lines = usage_csv([_row(1, "fake/a", 2, cost=0.5), _row(1, "fake/b", 1)]).splitlines()
    assert lines[0].startswith("day,model,key_name") and len(lines) == 3
    assert lines[1] == "2026-12-01,fake/a,ci,key_1,2,0,20,8,2,0.50000000,0.00000000"


def test_money_shows_what_a_request_costs() -> None:
    assert (money(0), money(12.5), money(0.000031)) == ("$0.00", "$12.50", "$0.000031")


@pytest.mark.parametrize(("field", "value", "says"), [
    ("since", "31/12/2026", "From must be a date"), ("until", "tomorrow", "To must be a date"),
    ("status", "bad", "Status must be ok, error or a status code"), ("status", "4290", "Status must be"),
    ("status", "²²²", "Status must be"), ("until", "9999-12-31", "between the years"),
    ("model", "fake/\x00", "Model must be at most 256 printable"), ("thread", "t" * 300, "Thread must be"),
])
def test_a_bad_log_filter_says_which_field(field: str, value: str, says: str) -> None:
    given = {"since": None, "until": None, "status": None, "model": None, "thread": None, field: value}
    with pytest.raises(ValueError, match=says):
        log_filter(**given)


def test_the_log_filter_takes_whole_days() -> None:
    where = log_filter("2026-12-01", "2026-12-02", "error", "", "t1")
    assert where.since == datetime(2026, 12, 1, tzinfo=UTC) and where.until == datetime(2026, 12, 3, tzinfo=UTC)
    assert (where.status, where.model, where.thread_id) == ("error", None, "t1")
    only_to = log_filter(None, "2026-11-20", None, None, None)  # the week up to it
    assert (only_to.since, only_to.until) == (datetime(2026, 11, 14, tzinfo=UTC), datetime(2026, 11, 21, tzinfo=UTC))
