"""What the request log keeps of one request's memory: its fields, its block and the reasons."""

from __future__ import annotations

from opentelemetry.trace import INVALID_SPAN

from memgate_core.context import ContextBlock, MessageItem, ObservationItem
from memgate_core.events import Usage
from memgate_edge.auth import Principal
from memgate_edge.chat.account import RequestAccount, request_memory
from memgate_edge.chat.request import MemoryScope
from memgate_edge.context_client import ContextResult
from memgate_providers.registry import Route
from memgate_store.usage import UsageRecord

SCOPE = MemoryScope(thread_id="t1", resource_id="r1")
BLOCK = ContextBlock(
    thread_observations=[ObservationItem("obs_1", "t1", "Kim lives in Lisbon.", "high", "2026-12-01")],
    related_observations=[ObservationItem("obs_2", "t0", "Kim adores tram 28.", "medium", "2026-11-02", score=0.7)],
    recent_messages=[MessageItem("msg_2", "user", "hello", 1.0)],
    recalled_messages=[MessageItem("msg_1", "user", "tram 28!", 0.5, thread_id="t0", score=0.4)],
    text="<memgate_memory>...</memgate_memory>", tokens=42,
)


def test_a_block_is_kept_with_why_each_item_is_in_it() -> None:
    fields = request_memory(SCOPE, ContextResult(BLOCK, None, 1.25), keep_block=True)
    assert (fields["thread_id"], fields["memory_tokens"], fields["memory_degraded"]) == ("t1", 42, None)
    injected = fields["injected"]
    assert (injected.block, injected.thread_observations, injected.recent_messages) == (BLOCK.text, 1, 1)
    assert [(i.kind, i.id, i.thread_id, i.score) for i in injected.recalled] == [
        ("observation", "obs_2", "t0", 0.7), ("message", "msg_1", "t0", 0.4)]


def test_degraded_memory_is_said_and_nothing_kept() -> None:
    fields = request_memory(SCOPE, ContextResult(None, "timeout", 300.0), keep_block=True)
    assert (fields["memory_tokens"], fields["memory_degraded"], "injected" in fields) == (0, "timeout", False)


def test_without_memory_or_with_blocks_off_no_block_is_kept() -> None:
    assert request_memory(None, None, keep_block=True) == {}
    assert "injected" not in request_memory(SCOPE, ContextResult(BLOCK, None, 1.0), keep_block=False)


class Rows:
    def __init__(self) -> None:
        self.rows: list[UsageRecord] = []

    def record(self, row: UsageRecord) -> None:
        self.rows.append(row)


def _account(rows: Rows) -> RequestAccount:
    return RequestAccount(rows, Principal(tenant="t", key_id="key_1"), INVALID_SPAN, keep_block=True)  # type: ignore[arg-type]


def test_an_account_is_recorded_once_and_byok_only_for_the_keyed_provider() -> None:
    rows = Rows()
    account = _account(rows)
    account.route, account.keyed_providers = Route("openai", "gpt-4o-mini"), {"openai"}
    account.record(Route("anthropic", "claude-x"), 200, Usage(10, 5))  # a fallback answered, with memgate's key
    account.record(None, 500, None)  # (a later failure does not write a second row)
    assert [(r.provider, r.status, r.byok, r.input_tokens) for r in rows.rows] == [("anthropic", 200, False, 10)]

    keyed = _account(rows)
    keyed.route, keyed.keyed_providers = Route("openai", "gpt-4o-mini"), {"openai"}
    keyed.record(None, 200, Usage(1, 1))  # (the route known so far)
    assert (rows.rows[-1].provider, rows.rows[-1].byok) == ("openai", True)


def test_a_request_refused_before_it_was_parsed_is_a_row_too() -> None:
    rows = Rows()
    _account(rows).record(None, 400, None)
    assert [(r.model, r.provider, r.status, r.thread_id) for r in rows.rows] == [("", "", 400, None)]
