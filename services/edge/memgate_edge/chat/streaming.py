"""Relaying a provider's SSE stream event by event, while collecting the answer.

Complete SSE events are forwarded as soon as they arrive. The stream's end marker (chat
completions' `data: [DONE]`, the Messages API's `message_stop`) is held back until the
exchange is recorded, so the client's "end of answer" means "memgate remembers it".
What the events look like is a `StreamFormat`'s business: `ChatStream` passes chat
completion chunks through; `memgate_edge.messages.stream` has the Messages API's.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from typing import Any, Protocol

import msgspec
from opentelemetry import trace

from memgate_core.events import Usage
from memgate_edge.chat.account import CLIENT_CLOSED
from memgate_edge.chat.exchange import ExchangeRecorder, PendingExchange, usage_of
from memgate_edge.chat.request import describe_tool_calls
from memgate_providers import http

log = logging.getLogger("memgate.edge.streaming")

_DONE = b"[DONE]"


class StreamCollector:
    """Accumulates the assistant's text and the usage from chunk payloads."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.usage: Usage | None = None
        self.tool_calls: dict[int, list[str]] = {}  # index -> [name, arguments so far]

    def feed(self, payload: bytes) -> None:
        self.feed_chunk(decoded(payload))

    def feed_chunk(self, chunk: Any) -> None:
        """One decoded chunk (anything else is passed over)."""
        if not isinstance(chunk, dict):
            return
        for delta, _ in first_choice(chunk):
            if isinstance(delta.get("content"), str):
                self.parts.append(delta["content"])
            # Tool calls stream in pieces: the name first, the JSON arguments in fragments.
            for index, _, function in tool_call_pieces(delta):
                self._feed_tool_call(index, function)
        self.usage = usage_of(chunk) or self.usage

    def _feed_tool_call(self, index: int, function: dict[str, Any]) -> None:
        slot = self.tool_calls.setdefault(index, ["", ""])
        if isinstance(function.get("name"), str):
            slot[0] += function["name"]
        if isinstance(function.get("arguments"), str):
            slot[1] += function["arguments"]

    @property
    def text(self) -> str:
        text = "".join(self.parts)
        if self.tool_calls:
            calls = describe_tool_calls([(name or "?", args) for _, (name, args) in sorted(self.tool_calls.items())])
            text = "\n".join(filter(None, [text, calls]))
        return text


class StreamFormat(Protocol):
    """What one API's stream looks like: which events go out, which one ends it, what the
    answer was, and how an error is said once the headers are gone."""

    def translate(self, event: bytes) -> tuple[bytes, bytes]:
        """For one upstream event: what goes out now, and the end marker if this is it
        (held back until the exchange is recorded)."""
        ...

    def error_event(self, message: str, code: str, kind: str) -> bytes: ...

    @property
    def text(self) -> str:
        """The assistant's answer so far, as memgate remembers it."""
        ...

    @property
    def usage(self) -> Usage | None: ...


class FromChatChunks:
    """A stream form whose upstream speaks chat completions: the answer is collected from
    its chunks (what memory keeps of a turn is the same whichever API it came by)."""

    def __init__(self) -> None:
        self.collector = StreamCollector()

    def read(self, data: bytes) -> Any:
        """One chunk's data, collected, and decoded for the form's own use (None: not JSON)."""
        chunk = decoded(data)
        self.collector.feed_chunk(chunk)
        return chunk

    @property
    def text(self) -> str:
        return self.collector.text

    @property
    def usage(self) -> Usage | None:
        return self.collector.usage


def decoded(payload: bytes) -> Any:
    """A chunk's JSON, or None when it is not JSON."""
    try:
        return msgspec.json.decode(payload)
    except msgspec.DecodeError:
        return None


def first_choice(chunk: Any) -> Iterator[tuple[dict[str, Any], Any]]:
    """(delta, finish_reason) of a decoded chat chunk's first choice, if it has one."""
    choices = chunk.get("choices") if isinstance(chunk, dict) else None
    for choice in choices if isinstance(choices, list) else ():
        if isinstance(choice, dict) and choice.get("index", 0) == 0:
            delta = choice.get("delta")
            yield delta if isinstance(delta, dict) else {}, choice.get("finish_reason")


def tool_call_pieces(delta: dict[str, Any]) -> Iterator[tuple[int, dict[str, Any], dict[str, Any]]]:
    """(index, call, function) of each tool call piece in a chunk's delta."""
    calls = delta.get("tool_calls")
    for call in calls if isinstance(calls, list) else ():
        if isinstance(call, dict) and isinstance(call.get("function"), dict):
            yield call.get("index", 0) if isinstance(call.get("index"), int) else 0, call, call["function"]


class ChatStream(FromChatChunks):
    """Chat completion chunks, passed through untouched."""

    def translate(self, event: bytes) -> tuple[bytes, bytes]:
        data = data_of(event)
        if data == _DONE:
            return b"", event
        if data:
            self.collector.feed(data)
        return event, b""

    def error_event(self, message: str, code: str, kind: str) -> bytes:
        error = {"error": {"message": message, "type": kind, "code": code}}
        return b"data: " + msgspec.json.encode(error) + b"\n\n"


def _split_events(buffer: bytes) -> tuple[list[bytes], bytes]:
    normalized = buffer.replace(b"\r\n", b"\n")
    *events, rest = normalized.split(b"\n\n")
    return [e + b"\n\n" for e in events], rest


def _translated(form: StreamFormat, events: list[bytes], *, hold_end: bool) -> tuple[bytes, bytes]:
    """What goes out now for these upstream events, and the end marker if `hold_end` (it
    waits for the exchange to be recorded) and one came."""
    out, held = [], b""
    for event in events:
        now, end = form.translate(event)
        out.append(now)
        if end and hold_end:
            held = end
        elif end:
            out.append(end)
    return b"".join(out), held


def data_of(event: bytes) -> bytes | None:
    lines = [line[5:].lstrip() for line in event.split(b"\n") if line.startswith(b"data:")]
    return b"\n".join(lines) if lines else None


async def relay(
    upstream: http.Response, pending: PendingExchange | None, recorder: ExchangeRecorder, span: trace.Span,
    *, deadline: float, on_done: Callable[[int, Usage | None, float | None], None], form: StreamFormat,
) -> AsyncIterator[bytes]:
    """Yield the upstream's SSE events as `form` has them; record the exchange before the
    end marker. Ends `span`. `on_done` gets, once the stream is over, how it ended as a
    status (the headers said 200 long before), the usage the provider reported (if any) and
    when (`time.perf_counter()`) the first piece went out.
    """
    first_at: float | None = None
    ending = StreamEnding()
    try:
        with trace.use_span(span, end_on_exit=False):
            # `aclosing`: if this generator is closed at a yield, the inner one is closed
            # now (recording the exchange), not whenever it is garbage-collected.
            async with contextlib.aclosing(_relay(upstream, pending, recorder, deadline, form, ending)) as events:
                async for piece in events:
                    if first_at is None:
                        first_at = time.perf_counter()
                    yield piece
    finally:
        try:
            on_done(ending.status, form.usage, first_at)  # (before the span ends: the usage goes on it)
        finally:
            span.end()


class StreamEnding:
    """How a stream ended, as the status the request log keeps: 200 (whole), 504 (past the
    total time limit), 502 (the upstream broke off), 503 (not recorded), 499 (client gone)."""

    status = 200


async def _relay(
    upstream: http.Response, pending: PendingExchange | None, recorder: ExchangeRecorder, deadline: float,
    form: StreamFormat, ending: StreamEnding,
) -> AsyncGenerator[bytes, None]:
    held_end = b""
    completed = interrupted = False
    buffer = b""
    try:
        try:
            async for chunk in upstream.aiter_raw():
                if time.monotonic() > deadline:
                    # The headers are long gone: an error event is the only way left to say it.
                    yield form.error_event("The upstream stream exceeded the total time limit (MEMGATE_TIMEOUT_TOTAL).",
                                           "upstream_timeout", "upstream_error")
                    interrupted, ending.status = True, 504
                    break
                buffer += chunk
                events, buffer = _split_events(buffer)
                out, end = _translated(form, events, hold_end=pending is not None)
                held_end = end or held_end
                if out:
                    yield out
        except http.HTTPError as exc:
            yield form.error_event(f"The upstream stream broke off ({type(exc).__name__}).", "upstream_error",
                                   "upstream_error")
            interrupted, ending.status = True, 502
        if buffer.strip() and not interrupted:  # a last event without its blank line: an event all the same
            out, end = _translated(form, [buffer.rstrip(b"\n") + b"\n\n"], hold_end=pending is not None)
            held_end = end or held_end
            if out:
                yield out
        completed = True
    finally:
        if not completed:
            # The client went away: this generator is being cancelled, so nothing here may
            # await. Record what was produced and close the upstream connection (which
            # cancels the provider's work) in background tasks.
            ending.status = CLIENT_CLOSED
            if pending is not None:
                recorder.finish_in_background(pending, form.text, form.usage)
            recorder.close_in_background(upstream)
    await upstream.aclose()
    if pending is not None:
        try:
            # Shielded: SDKs often disconnect right after the last chunk, while this runs.
            await recorder.finish_shielded(pending, form.text, form.usage, interrupted=interrupted)
        except Exception as exc:
            log.error("recording exchange %s failed: %r", pending.exchange_id, exc)
            ending.status = 503
            yield form.error_event("memgate could not store this exchange in memory (its database is unreachable "
                                   "just now); the answer above is not remembered.", "memory_not_recorded",
                                   "server_error")
            return
    if held_end and not interrupted:
        yield held_end
