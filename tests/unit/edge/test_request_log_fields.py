"""What the request log keeps of one request's memory: its fields, its block and the reasons."""

from __future__ import annotations

from memgate_core.context import ContextBlock, MessageItem, ObservationItem
from memgate_edge.chat.request import MemoryScope
from memgate_edge.chat.service import request_memory
from memgate_edge.context_client import ContextResult

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
