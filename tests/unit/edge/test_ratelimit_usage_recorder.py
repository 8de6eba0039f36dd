"""The usage recorder: record() only buffers; batches are written in the background."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import msgspec

from memgate_edge.usage import UsageRecord, UsageRecorder
from memgate_store.usage import InjectedMemory, UsageNotWritten


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait for the recorder's task to get there (a fixed sleep was a guess on a busy machine)."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


def _record(n: int = 0) -> UsageRecord:
    return UsageRecord(tenant="t", key_id="key_1", model="fake/gpt-test", provider="fake", status=200,
                       stream=False, memory=True, input_tokens=n, output_tokens=1, latency_ms=2.5)


class Sink:
    def __init__(self) -> None:
        self.batches: list[list[UsageRecord]] = []
        self.pruned: list[int] = []
        self.fail = False
        self.failed = 0  # writes refused while `fail`

    async def insert_many(self, records: list[UsageRecord]) -> list[UsageRecord]:
        if self.fail:
            self.failed += 1
            raise ConnectionError("database down")
        self.batches.append(list(records))
        return []

    async def prune_blocks(self, keep_days: int) -> int:
        self.pruned.append(keep_days)
        return 0


async def test_record_only_buffers() -> None:
    sink = Sink()
    recorder = UsageRecorder(sink, block_days=30)
    recorder.record(_record())
    assert recorder.pending == 1 and sink.batches == []  # nothing is written until the task runs


async def test_flushes_on_the_interval_and_on_stop() -> None:
    sink = Sink()
    recorder = UsageRecorder(sink, block_days=30, flush_interval=0.05)
    await recorder.start()
    recorder.record(_record(1))
    await until(lambda: bool(sink.batches))
    assert [[r.input_tokens for r in b] for b in sink.batches] == [[1]]
    recorder.record(_record(2))
    await recorder.stop()  # stop writes what is left, without waiting for the interval
    assert [r.input_tokens for b in sink.batches for r in b] == [1, 2]
    assert recorder.pending == 0


async def test_a_full_batch_is_written_at_once_in_batches() -> None:
    sink = Sink()
    recorder = UsageRecorder(sink, block_days=30, flush_interval=60, batch_size=10)
    await recorder.start()
    for n in range(25):
        recorder.record(_record(n))
    await until(lambda: sum(map(len, sink.batches)) == 25)  # (long before the 60 s interval)
    assert [len(b) for b in sink.batches] == [10, 10, 5]
    await recorder.stop()


async def test_rows_survive_a_database_outage() -> None:
    sink = Sink()
    sink.fail = True
    recorder = UsageRecorder(sink, block_days=30, flush_interval=0.02)
    await recorder.start()
    for n in range(3):
        recorder.record(_record(n))
    await until(lambda: sink.failed >= 2)  # written and refused, twice
    assert sink.batches == [] and recorder.pending == 3
    sink.fail = False
    await until(lambda: bool(sink.batches))
    assert [r.input_tokens for b in sink.batches for r in b] == [0, 1, 2]
    await recorder.stop()


async def test_buffer_is_bounded() -> None:
    sink = Sink()
    recorder = UsageRecorder(sink, block_days=30, max_buffer=5, batch_size=100)
    for n in range(8):
        recorder.record(_record(n))
    assert recorder.pending == 5
    await recorder.flush()
    assert [r.input_tokens for b in sink.batches for r in b] == [3, 4, 5, 6, 7]  # the oldest were dropped


async def test_rows_a_batch_wrote_before_an_outage_are_not_written_twice() -> None:
    class HalfSink(Sink):
        async def insert_many(self, records: list[UsageRecord]) -> list[UsageRecord]:
            if self.fail:
                self.fail = False
                self.batches.append(list(records[:2]))
                raise UsageNotWritten(records[2:]) from ConnectionError("database went away")
            return await super().insert_many(records)

    sink = HalfSink()
    sink.fail = True
    recorder = UsageRecorder(sink, block_days=30, flush_interval=60)
    for n in range(5):
        recorder.record(_record(n))
    assert await recorder.flush() == 2 and recorder.pending == 3
    assert await recorder.flush() == 3
    assert [r.input_tokens for b in sink.batches for r in b] == [0, 1, 2, 3, 4]


async def test_beyond_max_blocks_rows_wait_without_their_memory_block() -> None:
    recorder = UsageRecorder(Sink(), block_days=30, flush_interval=60, max_blocks=2)
    block = InjectedMemory("<memgate_memory>…</memgate_memory>", 1, 1, [])
    for n in range(4):
        recorder.record(msgspec.structs.replace(_record(n), injected=block))
    assert [r.injected is not None for r in recorder._buffer] == [True, True, False, False]
    assert [r.input_tokens for r in recorder._buffer] == [0, 1, 2, 3]  # (the rows all wait)


async def test_a_count_the_price_tables_refuse_costs_its_row_the_price_not_the_writer() -> None:
    """Tiered prices (Gemini's past 200k tokens) refuse a negative count; the row is written
    unpriced, and the rows after it are written and priced."""
    sink = Sink()
    recorder = UsageRecorder(sink, block_days=30, flush_interval=0.05)
    await recorder.start()
    odd, fine = (msgspec.structs.replace(_record(n), provider="google", model="google/gemini-2.5-pro",
                                         route_model="gemini-2.5-pro") for n in (-5, 1000))
    recorder.record(odd)
    await asyncio.sleep(0.2)
    recorder.record(fine)
    await asyncio.sleep(0.2)
    await recorder.stop()
    written = [r for b in sink.batches for r in b]
    assert [(r.input_tokens, r.cost_usd is None) for r in written] == [(-5, True), (1000, False)]
