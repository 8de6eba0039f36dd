"""`memgate edge | observer | context`: one service per process (the Kubernetes shape)."""

from __future__ import annotations

import asyncio
import logging

from memgate_cli.runtime import HttpServer, Runtime, Service, build_edge, health_app, settle_heap
from memgate_cli.up import StopSignals, bootstrap_key
from memgate_context import ContextService
from memgate_core.config import Settings
from memgate_observer.choose import choose_observer
from memgate_observer.service import ObserverService
from memgate_telemetry import setup_tracing, shutdown_tracing

log = logging.getLogger("memgate")


async def run_service(settings: Settings, which: str, *, database_url: str, nats_url: str) -> int:
    if settings.qdrant_url is None:
        # Qdrant Edge lives inside one process: each service would get an index of its own,
        # and recall, search and deletes would miss what the others wrote.
        raise SystemExit(
            f"memgate {which}: the split services share one vector index: set MEMGATE_QDRANT_URL to a Qdrant "
            "server (and MEMGATE_QDRANT_API_KEY if it needs one). For one process with the in-process "
            "index, run `memgate up`."
        )
    signals = StopSignals()
    setup_tracing(f"memgate-{which}", settings.traces_file)
    runtime: Runtime | None = None
    started: list[Service] = []
    try:
        runtime = await Runtime.open(settings, database_url=database_url, nats_url=nats_url,
                                     name=f"memgate-{which}")
        if which == "edge":
            # Idempotent: every edge replica makes sure the configured keys exist (and never
            # creates or logs one of its own: `memgate keys create` does that).
            log.info(" ".join((await bootstrap_key(runtime, create_first=False)).split()))
            observer, notice = choose_observer(settings.observer_model, runtime.providers)
            notices = [notice] if notice else []
            if settings.secret_key is None:
                # Each replica would seal saved provider keys with a secret of its own.
                notices.append("MEMGATE_SECRET_KEY is not set: this edge seals saved provider keys with a secret "
                               "in its own data dir, which other replicas cannot open. Give every edge the same "
                               "MEMGATE_SECRET_KEY.")
                log.warning(notices[-1])
            edge = build_edge(runtime, notices=notices, observer_name=observer.name)
            for part in edge.parts:
                await part.start()
                started.append(part)
            http = HttpServer(edge.app, settings, settings.http_port)
        else:
            service = (ContextService(runtime.bus, runtime.stores, runtime.index, runtime.embedder)
                       if which == "context" else
                       ObserverService(settings, runtime.bus, runtime.stores, runtime.index, runtime.embedder,
                                       runtime.providers))
            await service.start()
            started.append(service)
            if isinstance(service, ObserverService) and service.notice:
                log.warning(service.notice)  # e.g. the observer fell back to `local`
            http = HttpServer(health_app(runtime), settings, settings.health_port)
        await http.start()
        started.append(http)
        settle_heap()
        log.info("memgate %s running", which)
        signals.starting = False
        await signals.received.wait()
        return 0
    except asyncio.CancelledError:
        signals.starting = False
        if not signals.received.is_set():
            raise
        return 0  # stopped while starting: what started stops below
    finally:
        signals.starting = False  # (a signal now must not cancel the clean-up)
        for part in reversed(started):
            await part.stop()
        if runtime is not None:
            await runtime.close()
        shutdown_tracing()
