"""Notices between services about changed data, on core NATS subjects.

They only make caches fresher sooner: each cache also expires its entries by itself, so a
notice lost during a NATS outage costs no correctness, only that delay.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import msgspec
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from memgate_bus.connection import Bus
from memgate_bus.subjects import THREADS_DELETED_SUBJECT
from memgate_core.events import ThreadsDeleted, threads_deleted_decoder

log = logging.getLogger("memgate.bus.notices")


async def announce_deleted(bus: Bus, tenant: str, thread_ids: list[str]) -> None:
    if not thread_ids:
        return
    try:
        await bus.nc.publish(THREADS_DELETED_SUBJECT, msgspec.json.encode(ThreadsDeleted(tenant, thread_ids)))
    except Exception as exc:  # (the caches expire by themselves)
        log.warning("could not announce deleted threads: %r", exc)


async def on_deleted(bus: Bus, forget: Callable[[ThreadsDeleted], None]) -> Subscription:
    async def received(msg: Msg) -> None:
        try:
            forget(threads_deleted_decoder.decode(msg.data))
        except msgspec.DecodeError as exc:
            log.warning("undecodable thread notice: %s", exc)

    return await bus.nc.subscribe(THREADS_DELETED_SUBJECT, cb=received)
