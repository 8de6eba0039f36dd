"""The NATS request/reply handler: decode a `ContextLookup`, answer a `ContextBlock`."""

from __future__ import annotations

import logging

import msgspec
from nats.aio.msg import Msg
from opentelemetry import trace

from memgate_bus import extract_context
from memgate_context.assemble import ContextAssembler
from memgate_core.context import ContextFailure, lookup_decoder, lookup_encoder

log = logging.getLogger("memgate.context")
tracer = trace.get_tracer("memgate.context")


class LookupHandler:
    def __init__(self, assembler: ContextAssembler) -> None:
        self.assembler = assembler

    async def __call__(self, msg: Msg) -> None:
        with tracer.start_as_current_span(
            "context.lookup", context=extract_context(msg.headers), kind=trace.SpanKind.SERVER
        ) as span:
            try:
                lookup = lookup_decoder.decode(msg.data)
                span.set_attribute("memgate.thread_id", lookup.thread_id)
                block = await self.assembler.lookup(lookup)
                span.set_attribute("memgate.tokens", block.tokens)
                reply = lookup_encoder.encode(block)
            except msgspec.DecodeError as exc:
                reply = lookup_encoder.encode(ContextFailure(f"bad lookup: {exc}"))
            except Exception as exc:
                log.exception("context lookup failed")
                reply = lookup_encoder.encode(ContextFailure(type(exc).__name__))
            await msg.respond(reply)
