"""Relaying a provider's SSE stream event by event, while collecting the answer.

Complete SSE events are forwarded as soon as they arrive. The final `data: [DONE]` is
held back until the exchange is recorded, so the client's "end of answer" means
"memgate remembers it".
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec
from opentelemetry import trace

from memgate_core.events import Usage
from memgate_edge.chat.exchange import ExchangeRecorder, PendingExchange, usage_of

_DONE = b"[DONE]"


class StreamCollector:
    """Accumulates the assistant's text and the usage from chunk payloads."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.usage: Usage | None = None

    def feed(self, payload: bytes) -> None:
        try:
            chunk: Any = msgspec.json.decode(payload)
        except msgspec.DecodeError:
            return
        if not isinstance(chunk, dict):
            return
        for choice in chunk.get("choices") or ():
            if isinstance(choice, dict) and choice.get("index", 0) == 0:
                delta = choice.get("delta") or {}
                if isinstance(delta, dict) and isinstance(delta.get("content"), str):
                    self.parts.append(delta["content"])
        self.usage = usage_of(chunk) or self.usage

    @property
    def text(self) -> str:
        return "".join(self.parts)


def _split_events(buffer: bytes) -> tuple[list[bytes], bytes]:
    normalized = buffer.replace(b"\r\n", b"\n")
    *events, rest = normalized.split(b"\n\n")
    return [e + b"\n\n" for e in events], rest


def _data_of(event: bytes) -> bytes | None:
    lines = [line[5:].lstrip() for line in event.split(b"\n") if line.startswith(b"data:")]
    return b"\n".join(lines) if lines else None


async def relay(
    upstream: httpx.Response, pending: PendingExchange | None, recorder: ExchangeRecorder, span: trace.Span
) -> AsyncIterator[bytes]:
    """Yield the upstream's SSE events; record the exchange before the final [DONE]. Ends `span`."""
    with trace.use_span(span, end_on_exit=True):
        async for piece in _relay(upstream, pending, recorder):
            yield piece


async def _relay(
    upstream: httpx.Response, pending: PendingExchange | None, recorder: ExchangeRecorder
) -> AsyncIterator[bytes]:
    collector = StreamCollector()
    held_done: bytes | None = None
    completed = False
    buffer = b""
    try:
        async for chunk in upstream.aiter_raw():
            buffer += chunk
            events, buffer = _split_events(buffer)
            out = []
            for event in events:
                data = _data_of(event)
                if data == _DONE and pending is not None:
                    held_done = event
                    continue
                if data:
                    collector.feed(data)
                out.append(event)
            if out:
                yield b"".join(out)
        if buffer.strip():
            yield buffer
        completed = True
    finally:
        if not completed:
            # The client went away (or the upstream broke): this generator is being cancelled,
            # so nothing here may await. Record what was produced and close the upstream
            # connection (which cancels the provider's work) in background tasks.
            if pending is not None:
                recorder.finish_in_background(pending, collector.text, collector.usage)
            recorder.close_in_background(upstream)
    await upstream.aclose()
    if pending is not None:
        await recorder.finish(pending, collector.text, collector.usage)
    if held_done is not None:
        yield held_done
