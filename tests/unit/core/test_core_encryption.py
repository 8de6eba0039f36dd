"""Secrets at rest (memgate_core.encryption): sealed values open with their secret and context
only, and the generated secret file is private to its owner."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from memgate_core.config import SettingsError, load_settings
from memgate_core.encryption import SECRET_FILE, SecretBox, SecretKeyError, SecretUnreadable, load_or_create_secret

SECRET = "a-test-secret-that-is-long-enough-0123456789"
KEY = "sk-proj-ThisIsAProviderKey1234"


def test_a_sealed_value_opens_with_its_secret_and_context() -> None:
    box = SecretBox(SECRET)
    sealed = box.seal(KEY, context="provider-key\x1facme\x1fopenai")
    assert KEY.encode() not in sealed and b"ThisIsAProviderKey" not in sealed
    assert box.open(sealed, context="provider-key\x1facme\x1fopenai") == KEY
    assert SecretBox(SECRET).open(sealed, context="provider-key\x1facme\x1fopenai") == KEY  # (a new process)
    assert box.seal(KEY, context="c") != box.seal(KEY, context="c")  # a fresh nonce each time


def test_another_secret_another_context_or_a_changed_byte_fails() -> None:
    sealed = SecretBox(SECRET).seal(KEY, context="provider-key\x1facme\x1fopenai")
    with pytest.raises(SecretUnreadable) as wrong_key:
        SecretBox("another-secret-that-is-long-enough-abcdef").open(sealed, context="provider-key\x1facme\x1fopenai")
    assert KEY not in str(wrong_key.value)
    with pytest.raises(SecretUnreadable):  # copied to another tenant's row
        SecretBox(SECRET).open(sealed, context="provider-key\x1fother\x1fopenai")
    tampered = bytearray(sealed)
    tampered[-1] ^= 1
    with pytest.raises(SecretUnreadable):
        SecretBox(SECRET).open(bytes(tampered), context="provider-key\x1facme\x1fopenai")
    for junk in (b"", b"\x01short", b"\x02" + sealed[1:]):
        with pytest.raises(SecretUnreadable):
            SecretBox(SECRET).open(junk, context="provider-key\x1facme\x1fopenai")


def test_the_generated_secret_file_has_mode_0600_and_is_kept(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"  # (not there yet)
    old_umask = os.umask(0o000)  # even a permissive umask gives a private file
    try:
        box = SecretBox.for_data_dir(None, data_dir)
        assert not (data_dir / SECRET_FILE).exists()  # nothing until first used
        sealed = box.seal(KEY, context="c")
    finally:
        os.umask(old_umask)
    path = data_dir / SECRET_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(path.read_text().strip()) >= 32
    assert SecretBox.for_data_dir(None, data_dir).open(sealed, context="c") == KEY  # a restart reads it back
    assert [p.name for p in data_dir.iterdir()] == [SECRET_FILE]  # no temporary file left


def test_processes_starting_at_once_share_one_secret(tmp_path: Path) -> None:
    secrets: list[str] = []
    threads = [threading.Thread(target=lambda: secrets.append(load_or_create_secret(tmp_path))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(secrets)) == 1 and len(secrets) == 8


def test_the_env_secret_wins_over_the_file(tmp_path: Path) -> None:
    sealed = SecretBox.for_data_dir(SECRET, tmp_path).seal(KEY, context="c")
    assert not (tmp_path / SECRET_FILE).exists()
    assert SecretBox(SECRET).open(sealed, context="c") == KEY
    with pytest.raises(SecretUnreadable):
        SecretBox.for_data_dir(None, tmp_path).open(sealed, context="c")


def test_an_unusable_secret_is_refused_without_showing_it(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as short:
        load_settings({"MEMGATE_SECRET_KEY": "tooshort-secret"})
    assert "MEMGATE_SECRET_KEY" in str(short.value) and "tooshort-secret" not in str(short.value)
    assert load_settings({"MEMGATE_SECRET_KEY": SECRET}).secret_key == SECRET
    (tmp_path / SECRET_FILE).write_text("\n")
    with pytest.raises(SecretKeyError):
        load_or_create_secret(tmp_path)
