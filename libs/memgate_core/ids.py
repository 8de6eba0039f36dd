"""Identifiers: validation of client-chosen ids and generation of our own."""

from __future__ import annotations

import os
import re
import time
import uuid

from memgate_core.errors import InvalidRequest

# Thread and resource ids are chosen by clients. Keep them printable, bounded and
# safe in URLs, NATS subjects (hashed there anyway) and logs.
CLIENT_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}")  # always used with fullmatch
CLIENT_ID_RULE = "1-128 characters from A-Z a-z 0-9 . _ : @ -, starting with a letter or digit"

_NAMESPACE = uuid.UUID("6f1c2b8e-5d1a-4c3e-9a57-0b7d3c2e9f41")


def validate_client_id(value: str, header: str) -> str:
    if not CLIENT_ID_PATTERN.fullmatch(value):
        raise InvalidRequest(f"Invalid {header} header: expected {CLIENT_ID_RULE}.", code="invalid_header", param=header)
    return value


def validate_id(value: str, param: str) -> str:
    """A thread or resource id given in a path, a query or a body: the headers' rule. An id
    that breaks it names nothing memgate could hold, and may not reach the stores (NUL)."""
    if not CLIENT_ID_PATTERN.fullmatch(value):
        raise InvalidRequest(f"Invalid {param}: expected {CLIENT_ID_RULE}.", code="invalid_value", param=param)
    return value


def new_id(prefix: str) -> str:
    """Time-ordered, unique ids (`<prefix>_<ms timestamp hex><random hex>`), sortable by creation."""
    return f"{prefix}_{int(time.time() * 1000):012x}{os.urandom(8).hex()}"


def stable_uuid(*parts: str) -> str:
    """A deterministic UUID for a tuple of strings: redelivered work maps to the same ids."""
    return str(uuid.uuid5(_NAMESPACE, "\x1f".join(parts)))
