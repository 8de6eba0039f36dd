"""The embedded nats-server lets in only memgate: loopback, a password made at each start,
kept out of the command line and in files only their owner can read."""

from __future__ import annotations

import asyncio
import stat
import subprocess
from pathlib import Path

import nats
import pytest
from nats.errors import NoServersError

from memgate_cli.embedded import DataDirLock, EmbeddedNats, write_runtime_file
from memgate_vectors import open_vector_index


async def test_only_the_credentials_it_made_get_in(tmp_path: Path) -> None:
    server = EmbeddedNats(tmp_path)
    url = server.start()
    try:
        client = await nats.connect(url)  # the url carries the credentials
        assert (await client.jetstream().account_info()).streams >= 0
        await client.close()
        for anonymous in (f"nats://127.0.0.1:{server.port}", f"nats://memgate:wrong@127.0.0.1:{server.port}"):
            with pytest.raises((NoServersError, nats.errors.Error, OSError)):
                await nats.connect(anonymous, allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=2)

        password = url.split(":")[2].split("@")[0]
        assert len(password) >= 32
        config = tmp_path / "nats" / "nats-server.conf"
        assert stat.S_IMODE(config.stat().st_mode) == 0o600 and password in config.read_text()
        processes = await asyncio.to_thread(subprocess.run, ["ps", "-eo", "args"], capture_output=True, text=True)
        assert password not in processes.stdout
        assert EmbeddedNats(tmp_path)._password != password  # a new one at each start
    finally:
        server.stop()


async def test_the_data_dir_and_the_vector_index_are_their_owners_only(tmp_path: Path) -> None:
    """The index's payloads hold every conversation's text: its directory is 0700 even in a
    data dir others may enter (one made before, or given), and a new data dir is 0700."""
    lock = DataDirLock(tmp_path / "new")
    lock.acquire()
    lock.release()
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o700
    (tmp_path / "old" / "qdrant").mkdir(parents=True, mode=0o755)
    (tmp_path / "old" / "qdrant").chmod(0o755)
    index = open_vector_index(qdrant_url=None, data_dir=tmp_path / "old", dim=384)
    await index.ensure()
    try:
        assert stat.S_IMODE((tmp_path / "old" / "qdrant").stat().st_mode) == 0o700
    finally:
        await index.close()


def test_the_runtime_file_is_its_owners_only(tmp_path: Path) -> None:
    (tmp_path / "runtime.json").write_text("{}")
    (tmp_path / "runtime.json").chmod(0o644)
    path = write_runtime_file(tmp_path, {"nats_url": "nats://memgate:secret@127.0.0.1:1"})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and "secret" in path.read_text()


def test_a_server_left_by_a_crashed_start_is_stopped_before_a_new_one(tmp_path: Path) -> None:
    orphan = EmbeddedNats(tmp_path)
    orphan.start()  # and never stopped: as if its memgate up had been killed
    successor = EmbeddedNats(tmp_path)
    try:
        successor.start()
        assert orphan._proc is not None and orphan._proc.wait(timeout=10) is not None  # it was stopped
        on_store = [int(p.name) for p in Path("/proc").iterdir()
                    if p.name.isdigit() and "nats-server" in (line := _cmdline(p)) and str(tmp_path) in line]
        assert successor._proc is not None and on_store == [successor._proc.pid]  # one server on the store
    finally:
        successor.stop()
        orphan.stop()


def _cmdline(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""
