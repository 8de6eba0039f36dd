"""An append-only journal of events an edge has answered but not yet published.

An edge that ends a response before its event is acked (`memgate up`) first writes the
event here, and marks it settled once it is acked or spooled. After a crash, `recover`
returns what was never settled. Appending to an open file costs a few microseconds, a
file per event about a hundred: this is on every memory request's path.

Not fsynced: like JetStream's own file store, it survives a crash of this process, not of
the machine. Records, in segment files `<n>.journal`:

    +<event id> <traceparent or -> <payload length>\\n<payload>\\n    an event
    -<event id>\\n                                                   that event is settled

A settle record goes to the segment being written, wherever its event is: `recover` reads
all segments in order. Segments are deleted oldest first, each once it is no longer written
to and all its events are settled (so a settle record never outlives its event's segment).
The segment being written is locked (flock): no other process on the same directory takes
it for a dead one's.
"""

from __future__ import annotations

import fcntl
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
        self._segments: list[Path] = []  # written by this journal and not deleted yet, oldest first
        self._where: dict[str, Path] = {}  # unsettled event id -> its segment
        self._unsettled: Counter[Path] = Counter()
        self._recovered: list[Path] = []
        self._closed = False

    def add(self, event_id: str, traceparent: str, payload: bytes) -> None:
        """Append an event (raises OSError if the disk refuses, or the journal is closed)."""
        if self._closed:
            raise OSError("the journal is closed")
        if self._fd is None or self._size >= self.segment_bytes:
            self._roll()
        assert self._segment is not None
        self._append(f"+{event_id} {traceparent or '-'} {len(payload)}\n".encode() + payload + b"\n")
        self._where[event_id] = self._segment
        self._unsettled[self._segment] += 1

    def settle(self, event_id: str) -> None:
        segment = self._where.pop(event_id, None)
        if segment is None:
            return
        self._unsettled[segment] -= 1
        if self._fd is not None:
            try:
                self._append(f"-{event_id}\n".encode())
            except OSError as exc:  # at worst the event is published once more after a crash
                log.warning("could not mark %s settled in the journal: %s", event_id, exc)
        self._drop_settled()

    def pending(self) -> int:
        return len(self._where)

    def recover(self) -> list[JournaledEvent]:
        """The unsettled events of segments this journal is not writing (a dead process's),
        oldest first. Call `forget_recovered` once they are safe elsewhere."""
        found: dict[str, JournaledEvent] = {}
        self._recovered = self._dead_segments()
        for segment in self._recovered:
            for event in _read(segment):
                if isinstance(event, JournaledEvent):
                    found[event.event_id] = event
                else:
                    found.pop(event, None)
        return list(found.values())

    def forget_recovered(self) -> None:
        for segment in self._recovered:
            segment.unlink(missing_ok=True)
        self._recovered = []

    def close(self) -> None:
        """Stop writing; the segment stays if some of its events are still unsettled."""
        self._closed = True
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._segment = None
        self._drop_settled()

    def _dead_segments(self) -> list[Path]:
        """Segments no live journal writes to, oldest first."""
        dead = []
        for segment in sorted(self.directory.glob("*.journal"), key=_number):
            if segment == self._segment:
                continue
            try:
                fd = os.open(segment, os.O_RDONLY)
            except FileNotFoundError:
                continue  # settled and deleted by its live journal meanwhile
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # another process's live segment
            finally:
                os.close(fd)  # (closing releases the probe's lock)
            dead.append(segment)
        return dead

    def _append(self, record: bytes) -> None:
        assert self._fd is not None
        written = 0
        while written < len(record):  # a short write would tear the record
            written += os.write(self._fd, record[written:])
        self._size += len(record)

    def _roll(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        number = max((_number(p) for p in self.directory.glob("*.journal")), default=0) + 1
        while True:
            segment = self.directory / f"{number:012d}.journal"
            try:
                fd = os.open(segment, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
                break
            except FileExistsError:
                number += 1
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released when the file is closed
        self._fd, self._segment, self._size = fd, segment, 0
        self._segments.append(segment)
        self._drop_settled()

    def _drop_settled(self) -> None:
        while (self._segments and self._segments[0] != self._segment
               and self._unsettled[self._segments[0]] <= 0):
            segment = self._segments.pop(0)
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
