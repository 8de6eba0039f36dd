"""Encryption of secrets at rest (a tenant's provider keys): AES-256-GCM under one secret per
installation.

The secret is MEMGATE_SECRET_KEY when set (any string of at least 32 characters), else the
file `secret.key` in the data directory, generated once with mode 0600 on first use. Edge
replicas that do not share a data directory must share MEMGATE_SECRET_KEY, or each would seal
with its own. A sealed value is bound to a `context` (e.g. its tenant and provider): moved to
another row, it no longer opens.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from functools import cached_property
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

SECRET_FILE = "secret.key"
MIN_SECRET_CHARS = 32
_FORMAT = b"\x01"  # the first byte of a sealed value: AES-256-GCM, 12-byte nonce
_NONCE_BYTES = 12
_TAG_BYTES = 16


class SecretUnreadable(Exception):
    """A sealed value this secret cannot open: sealed under another secret, or altered. The
    message never holds the value."""


class SecretKeyError(Exception):
    """The installation's secret cannot be read or is not usable (the message says why)."""


def load_or_create_secret(data_dir: Path) -> str:
    """The secret in `data_dir/secret.key`, written there first (mode 0600) if there is none.
    Two processes starting at once end up with the same one: the file appears whole, once."""
    path = data_dir / SECRET_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        tmp = data_dir / f".{SECRET_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.fchmod(fd, 0o600)  # (whatever the umask)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(32) + "\n")
            try:
                os.link(tmp, path)  # atomic, and never replaces a secret another process wrote first
            except FileExistsError:
                pass
        finally:
            tmp.unlink(missing_ok=True)
    try:
        secret = path.read_text().strip()
    except OSError as exc:
        raise SecretKeyError(f"{path} cannot be read: {exc.strerror}") from None
    if len(secret) < MIN_SECRET_CHARS:
        raise SecretKeyError(f"{path} holds no usable secret (at least {MIN_SECRET_CHARS} characters)")
    return secret


def derive_key(secret: str) -> bytes:
    """The AES-256 key of a secret: any string of enough entropy (HKDF-SHA256)."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"memgate secret box v1").derive(secret.encode())


class SecretBox:
    """Seals and opens short secrets. `secret`: the secret itself, or a function giving it,
    called on first use (so a process that never seals anything never creates a key file)."""

    def __init__(self, secret: str | Callable[[], str]) -> None:
        self._secret = secret

    @classmethod
    def for_data_dir(cls, secret: str | None, data_dir: Path) -> SecretBox:
        """The box of MEMGATE_SECRET_KEY (`secret`) when set, else of the data dir's key file."""
        return cls(secret if secret else lambda: load_or_create_secret(data_dir))

    @cached_property
    def _aead(self) -> AESGCM:
        secret = self._secret if isinstance(self._secret, str) else self._secret()
        return AESGCM(derive_key(secret))

    def seal(self, plaintext: str, *, context: str) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return _FORMAT + nonce + self._aead.encrypt(nonce, plaintext.encode(), context.encode())

    def open(self, sealed: bytes, *, context: str) -> str:
        """The plaintext; SecretUnreadable when this box (and context) cannot open it."""
        if len(sealed) < 1 + _NONCE_BYTES + _TAG_BYTES or sealed[:1] != _FORMAT:
            raise SecretUnreadable("not a sealed value of this format")
        nonce, body = sealed[1:1 + _NONCE_BYTES], sealed[1 + _NONCE_BYTES:]
        try:
            return self._aead.decrypt(nonce, body, context.encode()).decode()
        except InvalidTag:
            raise SecretUnreadable("sealed under another secret, for another context, or altered") from None
