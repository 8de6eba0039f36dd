"""Per-request usage, recorded off the hot path.

`record()` only appends to an in-memory buffer; a background task writes the buffer to
Postgres (`usage_events`, one COPY per batch) every `flush_interval` seconds or as soon
as `batch_size` rows wait. If Postgres is unreachable, rows stay buffered (up to
`max_buffer`; beyond that the oldest are dropped and counted) and are retried; rows a
batch wrote before the connection failed are not written twice. A row refused as data
(a NUL in a text, a number too large for its column) is set aside (counted, logged),
never retried.
Each row is priced as its batch is written (`memgate_providers.prices`), off the request.
`stop()` writes what is left. Once an hour the request log's memory blocks older than
`block_days` are pruned; beyond `max_blocks` rows waiting, new rows wait without their block.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Protocol

import msgspec
from prometheus_client import Counter

from memgate_providers.prices import cost_usd
from memgate_store.usage import UsageNotWritten, UsageRecord
from memgate_telemetry.metrics import count_usage

log = logging.getLogger("memgate.edge.usage")

USAGE_ROWS = Counter("memgate_usage_rows_total", "Usage rows by outcome", ["outcome"])  # written | dropped | refused

PRUNE_EVERY_SECONDS = 3600.0

__all__ = ["UsageRecord", "UsageRecorder"]


class UsageSink(Protocol):
    async def insert_many(self, records: list[UsageRecord]) -> list[UsageRecord]:
        """Write the rows; return those refused as data (never to be retried)."""
        ...

    async def prune_blocks(self, keep_days: int) -> int:
        """Delete the memory blocks kept longer than `keep_days`."""
        ...


class UsageRecorder:
    def __init__(self, sink: UsageSink, *, block_days: int, flush_interval: float = 1.0, batch_size: int = 500,
                 max_buffer: int = 100_000, max_blocks: int = 5_000) -> None:
        self.sink = sink
        self.block_days = block_days
        self.max_blocks = max_blocks  # rows waiting with their memory block (a block is ~4 bytes a token)
        self._pruned_at = 0.0
        self.flush_interval = flush_interval
        self.batch_size = batch_size
        self._buffer: deque[UsageRecord] = deque(maxlen=max_buffer)
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    def record(self, record: UsageRecord) -> None:
        """Buffer one row; never blocks, never raises for I/O."""
        # Tokens count once, here (the row may be retried or dropped later); its cost once it is priced.
        count_usage(record.provider, record.input_tokens, record.output_tokens, record.memory_tokens or 0)
        if len(self._buffer) == self._buffer.maxlen:
            USAGE_ROWS.labels("dropped").inc()  # the oldest row makes room
        if record.injected is not None and len(self._buffer) >= self.max_blocks:
            # Postgres away for long: the rows still wait, their blocks (kilobytes each) do not.
            record = msgspec.structs.replace(record, injected=None)
        self._buffer.append(record)
        if len(self._buffer) >= self.batch_size:
            self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._buffer)

    async def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="usage-recorder")

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
        await self.flush()

    async def flush(self) -> int:
        """Write every buffered row, batch by batch; returns the rows written."""
        written = 0
        while self._buffer:
            batch = [_priced(self._buffer.popleft()) for _ in range(min(self.batch_size, len(self._buffer)))]
            try:
                refused = await self.sink.insert_many(batch)
            except Exception as exc:  # keep the rows not written, retry on the next tick
                left = exc.rows if isinstance(exc, UsageNotWritten) else batch  # (the others are written)
                self._buffer.extendleft(reversed(left))
                written += len(batch) - len(left)
                USAGE_ROWS.labels("written").inc(len(batch) - len(left))
                log.warning("could not write %d usage rows (kept, will retry): %r", len(left), exc.__cause__ or exc)
                break
            if refused:
                USAGE_ROWS.labels("refused").inc(len(refused))
                log.error("usage: %d rows refused by the database and set aside (e.g. model %r)",
                          len(refused), refused[0].model[:80])
            written += len(batch) - len(refused)
            USAGE_ROWS.labels("written").inc(len(batch) - len(refused))
        return written

    async def _run(self) -> None:
        while not self._stopping:
            try:
                await asyncio.wait_for(self._wake.wait(), self.flush_interval)
            except TimeoutError:
                pass
            self._wake.clear()
            if not self._stopping:
                try:
                    await self.flush()
                except Exception:  # the writer goes on: rows after this tick's still get written
                    log.exception("usage: writing a batch failed")
                await self._prune()

    async def _prune(self) -> None:
        now = time.monotonic()
        if now - self._pruned_at < PRUNE_EVERY_SECONDS:
            return
        self._pruned_at = now
        try:
            await self.sink.prune_blocks(self.block_days)
        except Exception as exc:  # (next hour, then)
            log.warning("could not prune the request log's memory blocks: %r", exc)


def _priced(record: UsageRecord) -> UsageRecord:
    if record.cost_usd is not None or (record.status >= 400 and not (record.input_tokens or record.output_tokens)):
        # (priced already: a batch kept for a retry; a failed request cost nothing, unless it
        # reported tokens: a stream that broke off, or whose exchange was not stored)
        return record
    try:
        cost = cost_usd(record.provider, record.route_model, record.input_tokens, record.output_tokens)
    except Exception as exc:  # (a price table's surprise costs this row its price, not the batch)
        log.warning("usage: no price for %s/%s: %r", record.provider, record.route_model[:80], exc)
        cost = None
    if not record.byok:  # (a bring-your-own-key request is billed to its caller)
        count_usage(record.provider, 0, 0, cost_usd=cost)
    return msgspec.structs.replace(record, cost_usd=cost) if cost is not None else record
