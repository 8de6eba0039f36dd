"""One NATS connection per process, with JetStream and the streams memgate needs."""

from __future__ import annotations

import logging
from collections.abc import Callable
from urllib.parse import urlsplit

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from memgate_bus.subjects import EXCHANGE_STREAM, EXCHANGE_SUBJECTS

log = logging.getLogger("memgate.bus")


class Bus:
    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream(timeout=5)
        self._mark_closing: Callable[[], None] = lambda: None

    @classmethod
    async def connect(cls, url: str, *, name: str) -> Bus:
        where = _redacted(url)  # NATS URLs may carry user:password or a token
        closing = False

        async def disconnected() -> None:
            if not closing:  # our own close() is not news
                log.warning("NATS disconnected from %s", where)

        async def reconnected() -> None:
            log.info("NATS reconnected to %s", where)

        async def error(exc: Exception) -> None:
            log.warning("NATS error: %s", exc)

        nc = await nats.connect(
            url,
            name=name,
            max_reconnect_attempts=-1,  # keep trying: the outbox holds events meanwhile
            reconnect_time_wait=0.5,
            disconnected_cb=disconnected,
            reconnected_cb=reconnected,
            error_cb=error,
        )
        bus = cls(nc)

        def mark_closing() -> None:
            nonlocal closing
            closing = True

        bus._mark_closing = mark_closing
        return bus

    async def ensure_streams(self) -> None:
        config = StreamConfig(
            name=EXCHANGE_STREAM,
            subjects=EXCHANGE_SUBJECTS,
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=7 * 24 * 3600,  # seconds; observers that fall a week behind have bigger problems
            duplicate_window=120,
        )
        try:
            await self.js.stream_info(EXCHANGE_STREAM)
            await self.js.update_stream(config)
        except NotFoundError:
            await self.js.add_stream(config)

    async def consumer_backlog(self, stream: str, durable: str) -> int:
        """Messages a durable consumer has still to finish: not yet delivered, or delivered
        and not yet acked (one request to the server)."""
        info = await self.js.consumer_info(stream, durable)
        return int(info.num_pending or 0) + int(info.num_ack_pending or 0)

    @property
    def connected(self) -> bool:
        return self.nc.is_connected

    async def close(self) -> None:
        # Services are stopped before this, so nothing is in flight; drain() would wait on
        # the observer's idle pull subscription for its whole timeout.
        self._mark_closing()
        if not self.nc.is_closed:
            await self.nc.close()


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}{f':{parts.port}' if parts.port else ''}"
