"""The fake provider's shared state: recorded requests and the current behaviour.

Guarded by one lock because the in-process handle reads and writes it from the test's
thread while the server's event loop runs in another.
"""

from __future__ import annotations

import threading
from typing import Annotated, Any

import msgspec

NonNegative = Annotated[int, msgspec.Meta(ge=0)]
HttpStatus = Annotated[int, msgspec.Meta(ge=100, le=599)]


class Behavior(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """How the fake misbehaves; the default is fast, healthy and honest."""

    headers_delay_ms: NonNegative = 0
    """Before anything is sent, even a stream's headers: a provider slow to take the request."""
    delay_ms: NonNegative = 0
    """Before the response (non-streaming) or before the first chunk (streaming)."""
    chunk_delay_ms: NonNegative = 0
    """Between stream chunks."""
    fail_status: HttpStatus | None = None
    """Answer with this status and an OpenAI-shaped error body (Anthropic-shaped on /v1/messages)."""
    fail_times: NonNegative | None = None
    """Fail only the next N chat or messages requests (with `fail_status`, or 500 if unset)."""
    reply: str | None = None
    """Fixed reply text instead of the default answer."""
    unterminated_end: bool = False
    """A stream's last event without the blank line that ends an event (the stream just stops)."""


class FakeState:
    """Recorded chat requests, in arrival order, and the behaviour to apply next."""

    def __init__(self, *, record: bool = True, behavior: Behavior | None = None) -> None:
        self._lock = threading.Lock()
        self._record = record
        self._requests: list[dict[str, Any]] = []
        self._stream_outcomes: list[str] = []
        self._initial = behavior or Behavior()
        self._behavior = self._initial

    @property
    def behavior(self) -> Behavior:
        return self._behavior

    def record(self, entry: dict[str, Any]) -> None:
        if self._record:
            with self._lock:
                self._requests.append(entry)

    def requests(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._requests)

    def record_stream_outcome(self, outcome: str) -> None:
        """'completed', or 'client_disconnected' when the caller went away mid-stream."""
        with self._lock:
            self._stream_outcomes.append(outcome)

    def stream_outcomes(self) -> list[str]:
        with self._lock:
            return list(self._stream_outcomes)

    def reset(self) -> None:
        """Forget recorded requests and return to the behaviour the server started with."""
        with self._lock:
            self._requests.clear()
            self._stream_outcomes.clear()
            self._behavior = self._initial

    def update_behavior(self, changes: dict[str, Any]) -> Behavior:
        """Merge `changes` into the current behaviour; raises msgspec.ValidationError."""
        with self._lock:
            merged = {**msgspec.structs.asdict(self._behavior), **changes}
            self._behavior = msgspec.convert(merged, Behavior)
            return self._behavior

    def take_failure(self) -> int | None:
        """The status to fail this request with, counting down `fail_times`; else None."""
        behavior = self._behavior
        if behavior.fail_status is None and behavior.fail_times is None:
            return None
        with self._lock:
            behavior = self._behavior
            if behavior.fail_times is None:
                return behavior.fail_status
            if behavior.fail_times <= 0:
                return None
            self._behavior = msgspec.structs.replace(behavior, fail_times=behavior.fail_times - 1)
            return behavior.fail_status or 500
