"""An append-only journal of events an edge has answered but not yet published.

An edge that ends a response before its event is acked (`memgate up`) first writes the
event here, and marks it settled once it is acked or spooled. After a crash, `recover`
returns what was never settled. Appending to an open file costs a few microseconds, a
file per event about a hundred: this is on every memory request's path.

Not fsynced: like JetStream's own file store, it survives a crash of this process, not of
the machine. Records, in segment files `<n>.journal`:

    +<event id> <traceparent or -> <payload length>\\n<payload>\\n    an event
    -<event id>\\n                                                   that event is settled

A segment is deleted once it is no longer written to and all its events are settled.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from pathlib import Path
from typing import NamedTuple

log = logging.getLogger("memgate.bus.journal")

SEGMENT_BYTES = 4 * 1024 * 1024


class JournaledEvent(NamedTuple):
    event_id: str
    traceparent: str
    payload: bytes


class Journal:
    def __init__(self, directory: Path, *, segment_bytes: int = SEGMENT_BYTES) -> None:
        self.directory = directory
        self.segment_bytes = segment_bytes
        directory.mkdir(parents=True, exist_ok=True)
        self._fd: int | None = None
        self._segment: Path | None = None
        self._size = 0
        self._where: dict[str, Path] = {}  # unsettled event id -> its segment
        self._unsettled: Counter[Path] = Counter()

    def add(self, event_id: str, traceparent: str, payload: bytes) -> None:
        """Append an event (raises OSError if the disk refuses)."""
        if self._fd is None or self._size >= self.segment_bytes:
            self._roll()
        assert self._fd is not None and self._segment is not None
        record = f"+{event_id} {traceparent or '-'} {len(payload)}\n".encode() + payload + b"\n"
        os.write(self._fd, record)
        self._size += len(record)
        self._where[event_id] = self._segment
        self._unsettled[self._segment] += 1

    def settle(self, event_id: str) -> None:
        segment = self._where.pop(event_id, None)
        if segment is None:
            return
        self._unsettled[segment] -= 1
        if segment != self._segment:  # an older segment: nothing is written to it any more
            self._drop_if_settled(segment)
            return
        try:
            assert self._fd is not None
            record = f"-{event_id}\n".encode()
            os.write(self._fd, record)
            self._size += len(record)
        except OSError as exc:  # at worst the event is published once more after a crash
            log.warning("could not mark %s settled in the journal: %s", event_id, exc)

    def pending(self) -> int:
        return len(self._where)

    def recover(self) -> list[JournaledEvent]:
        """The unsettled events of segments this journal is not writing (a dead process's),
        oldest first. Call `forget_recovered` once they are safe elsewhere."""
        found: dict[str, JournaledEvent] = {}
        for segment in self._old_segments():
            for event in _read(segment):
                if isinstance(event, JournaledEvent):
                    found[event.event_id] = event
                else:
                    found.pop(event, None)
        return list(found.values())

    def forget_recovered(self) -> None:
        for segment in self._old_segments():
            segment.unlink(missing_ok=True)

    def close(self) -> None:
        """Stop writing; the segment stays if some of its events are still unsettled."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        segment, self._segment = self._segment, None
        if segment is not None:
            self._drop_if_settled(segment)

    def _old_segments(self) -> list[Path]:
        return sorted((p for p in self.directory.glob("*.journal") if p != self._segment), key=_number)

    def _roll(self) -> None:
        previous = self._segment
        if self._fd is not None:
            os.close(self._fd)
        existing = [_number(p) for p in self.directory.glob("*.journal")]
        self._segment = self.directory / f"{max(existing, default=0) + 1:012d}.journal"
        self._fd = os.open(self._segment, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._size = 0
        if previous is not None:
            self._drop_if_settled(previous)

    def _drop_if_settled(self, segment: Path) -> None:
        if segment != self._segment and self._unsettled[segment] <= 0:
            self._unsettled.pop(segment, None)
            segment.unlink(missing_ok=True)


def _number(segment: Path) -> int:
    try:
        return int(segment.stem)
    except ValueError:
        return 0


def _read(segment: Path) -> list[JournaledEvent | str]:
    """A segment's records: events, and ids of settled events. A torn last record is skipped."""
    data = segment.read_bytes()
    records: list[JournaledEvent | str] = []
    at = 0
    while at < len(data):
        end = data.find(b"\n", at)
        if end < 0:
            break
        line = data[at:end].decode("utf-8", "replace")
        at = end + 1
        if line.startswith("-"):
            records.append(line[1:])
            continue
        parts = line[1:].split(" ")
        if not line.startswith("+") or len(parts) != 3 or not parts[2].isdigit():
            log.error("journal %s is damaged after byte %d; the rest is skipped", segment, at)
            break
        size = int(parts[2])
        if at + size + 1 > len(data):
            break  # the process died while writing this record: it was never answered
        records.append(JournaledEvent(parts[0], "" if parts[1] == "-" else parts[1], data[at:at + size]))
        at += size + 1
    return records
