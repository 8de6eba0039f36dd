"""The edge's journal of answered-but-unpublished events, on a real directory."""

from __future__ import annotations

import os
from pathlib import Path

from memgate_bus.journal import Journal, JournaledEvent


def _segments(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob("*.journal"))


def _die(journal: Journal) -> None:
    """What a crash does to the journal: its file is closed (and its lock released), nothing more."""
    assert journal._fd is not None
    os.close(journal._fd)


def test_a_restart_recovers_what_was_never_settled(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.add("exc_1", "00-aa-bb-01", b'{"n": 1}')
    journal.add("exc_2", "", b'{"n": 2}\nwith a newline')
    journal.add("exc_3", "", b'{"n": 3}')
    journal.settle("exc_2")
    _die(journal)
    restarted = Journal(tmp_path)
    assert restarted.recover() == [JournaledEvent("exc_1", "00-aa-bb-01", b'{"n": 1}'),
                                   JournaledEvent("exc_3", "", b'{"n": 3}')]
    restarted.forget_recovered()
    assert _segments(tmp_path) == []
    assert restarted.recover() == []


def test_a_live_journal_is_not_taken_for_a_dead_one(tmp_path: Path) -> None:
    live = Journal(tmp_path)
    live.add("exc_1", "", b"{}")
    assert live.recover() == []  # its own segment
    other = Journal(tmp_path)  # another process on the same directory, by mistake
    assert other.recover() == []  # the live segment is locked
    other.forget_recovered()
    assert len(_segments(tmp_path)) == 1


def test_a_record_torn_by_a_crash_is_skipped(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.add("exc_1", "", b'{"whole": true}')
    journal.add("exc_2", "", b'{"torn": true}')
    _die(journal)
    segment = tmp_path / _segments(tmp_path)[0]
    segment.write_bytes(segment.read_bytes()[:-5])  # died while writing exc_2: never answered
    assert [e.event_id for e in Journal(tmp_path).recover()] == ["exc_1"]


def test_an_event_settled_after_its_segment_filled_is_not_recovered(tmp_path: Path) -> None:
    journal = Journal(tmp_path, segment_bytes=100)
    journal.add("exc_0", "", b"x" * 40)
    journal.add("exc_1", "", b"y" * 40)  # the same segment, now full
    journal.add("exc_2", "", b"z" * 40)  # a new one
    journal.settle("exc_0")  # its record goes to the new segment; the old one stays for exc_1
    _die(journal)
    assert [e.event_id for e in Journal(tmp_path).recover()] == ["exc_1", "exc_2"]


def test_segments_are_deleted_oldest_first_once_settled(tmp_path: Path) -> None:
    journal = Journal(tmp_path, segment_bytes=40)
    for n in range(6):
        journal.add(f"exc_{n}", "", b"x" * 40)  # each record fills a segment: six segments
    assert len(_segments(tmp_path)) == 6
    journal.settle("exc_1")
    assert len(_segments(tmp_path)) == 6  # the second is settled, but the first is not yet
    journal.settle("exc_0")
    assert len(_segments(tmp_path)) == 4
    for n in (2, 3, 4):
        journal.settle(f"exc_{n}")
    assert len(_segments(tmp_path)) == 1  # only the one still written to
    journal.add("exc_6", "", b"y")  # rolls: the last full segment still holds unsettled exc_5
    assert len(_segments(tmp_path)) == 2
    journal.settle("exc_5")
    assert len(_segments(tmp_path)) == 1
    journal.settle("exc_6")
    journal.close()
    assert _segments(tmp_path) == []
    assert journal.pending() == 0


def test_close_keeps_a_segment_with_unsettled_events(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.add("exc_1", "", b"{}")
    journal.close()  # stopping while a publish is still out
    assert [e.event_id for e in Journal(tmp_path).recover()] == ["exc_1"]
