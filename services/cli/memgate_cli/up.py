"""`memgate up`: embedded engines plus edge, observer and context in one process.

Start order follows the data flow's dependencies; stop order is the reverse, so nothing
is left running after Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import TypeVar

from memgate_cli.embedded import DataDirLock, EmbeddedNats, EmbeddedPostgres, EngineSupervisor, write_runtime_file
from memgate_cli.runtime import HttpServer, Runtime, Service, build_edge, settle_heap
from memgate_context import ContextService
from memgate_core.config import Settings
from memgate_observer.service import ObserverService
from memgate_store import migrate
from memgate_store.keys import KEY_PREFIX
from memgate_telemetry import setup_tracing, shutdown_tracing

log = logging.getLogger("memgate")

T = TypeVar("T")


async def bootstrap_key(runtime: Runtime, *, create_first: bool = True) -> str:
    """Make the configured keys exist; the banner's lines about the API keys to use.

    With `create_first`, a first key is created (and shown, once) when there is none.
    """
    keys = runtime.stores.keys
    configured = runtime.settings.bootstrap_key
    admin = runtime.settings.admin_key
    for name, value in (("MEMGATE_BOOTSTRAP_KEY", configured), ("MEMGATE_ADMIN_KEY", admin)):
        if value and (not value.startswith(KEY_PREFIX) or len(value) < 20):
            raise SystemExit(f"memgate: {name} must start with 'msk_' and be at least 20 characters.")
    if admin and admin == configured:
        raise SystemExit("memgate: MEMGATE_ADMIN_KEY must differ from MEMGATE_BOOTSTRAP_KEY (a normal key).")
    if configured:
        await keys.insert(configured, "default", name="bootstrap")
        line = "API key:    from MEMGATE_BOOTSTRAP_KEY (tenant default)"
    elif create_first and await keys.count() == 0:
        _, plaintext = await keys.create("default", name="first key")
        line = f"API key:    {plaintext}  (tenant default; shown once, keep it)"
    else:
        line = "API keys:   already created; make another with `memgate keys create --tenant default`"
    if admin:
        await keys.insert(admin, "default", name="admin (MEMGATE_ADMIN_KEY)", is_admin=True)
        line += "\n  Admin key:  from MEMGATE_ADMIN_KEY (manages every tenant's keys: /v1/admin/)"
    return line


async def run_up(settings: Settings) -> int:
    started = time.perf_counter()
    lock = DataDirLock(settings.data_dir)
    lock.acquire()
    signals = StopSignals()
    setup_tracing("memgate", settings.traces_file)
    pg = EmbeddedPostgres(settings.data_dir)
    nats = EmbeddedNats(settings.data_dir, port=settings.nats_port)
    runtime = None
    services: list[Service] = []
    try:
        database_url = settings.database_url
        if not database_url:
            database_url = await _to_thread_to_the_end(pg.start)
        if settings.nats_url:
            nats_url = settings.nats_url
        else:
            nats.spawn()  # on the main thread: the server stops when this process dies
            nats_url = await _to_thread_to_the_end(nats.wait_ready)
        supervisor = EngineSupervisor(None if settings.database_url else pg, None if settings.nats_url else nats)
        await supervisor.start()
        services.append(supervisor)  # stopped after every service, before the engines
        await migrate(database_url)
        runtime = await Runtime.open(settings, database_url=database_url, nats_url=nats_url, name="memgate-up")
        key_line = await bootstrap_key(runtime)

        context = ContextService(runtime.bus, runtime.stores, runtime.index, runtime.embedder)
        observer = ObserverService(settings, runtime.bus, runtime.stores, runtime.index, runtime.embedder,
                                   runtime.providers)
        notices = [observer.notice] if observer.notice else []
        # The edge asks the context service in this process directly: no NATS hop per request.
        edge = build_edge(runtime, notices=notices, observer_name=observer.observer_name, local_context=context)
        http = HttpServer(edge.app, settings, settings.http_port)
        # Stopped in reverse: requests drain first, then what they left in the background.
        in_order: list[Service] = [context, observer, *edge.parts, http]
        for service in in_order:
            await service.start()
            services.append(service)

        base = f"http://{settings.http_host}:{settings.http_port}"
        write_runtime_file(settings.data_dir, {"pid": os.getpid(), "http": base, "nats_url": nats_url,
                                               "database_url": database_url})
        lines = [
            f"memgate is up in {time.perf_counter() - started:.1f}s",
            f"  API:        {base}/v1",
            f"  Dashboard:  {base}/dashboard",
            f"  Data dir:   {settings.data_dir}",
            f"  {key_line}",
            f"  Observer:   {observer.observer_name}",
        ]
        if observer.notice:
            lines.append(f"  Note:       {observer.notice}")
        lines.append("Press Ctrl-C to stop.")
        print("\n".join(lines), flush=True)
        settle_heap()

        signals.starting = False
        await signals.received.wait()
        print("memgate: stopping...", flush=True)
        return 0
    except asyncio.CancelledError:
        signals.starting = False
        if not signals.received.is_set():
            raise
        print("memgate: stopping before it was up...", flush=True)
        return 0
    finally:
        signals.starting = False  # (a signal now must not cancel the clean-up)
        for service in reversed(services):
            try:
                log.debug("stopping %s", type(service).__name__)
                await service.stop()
            except Exception:
                log.exception("error while stopping %s", type(service).__name__)
        if runtime is not None:
            log.debug("closing clients")
            await runtime.close()
        shutdown_tracing()
        await asyncio.to_thread(nats.stop)
        await asyncio.to_thread(pg.stop)
        (settings.data_dir / "runtime.json").unlink(missing_ok=True)
        lock.release()


class StopSignals:
    """SIGINT and SIGTERM stop memgate from the first step of its start on. While `starting`,
    a signal cancels the start, and the clean-up stops what had started (a SIGTERM there used
    to end the process at once, leaving a starting Postgres behind; a Ctrl-C, a traceback).
    A second signal ends the process at once (what it started stops with it: the engines
    watch this process)."""

    def __init__(self) -> None:
        self.received = asyncio.Event()
        self.starting = True
        self._start = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal)

    def _on_signal(self) -> None:
        if self.received.is_set():
            print("memgate: a second signal: stopping at once", file=sys.stderr, flush=True)
            os._exit(1)
        if self.starting and self._start is not None:
            self._start.cancel()
        self.received.set()


async def _to_thread_to_the_end(call: Callable[[], T]) -> T:
    """`call` in a worker thread; cancelled, it still waits for the call to return (an engine
    half started when the stop began must be there for the stop to find)."""
    work = asyncio.ensure_future(asyncio.to_thread(call))
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await work
        raise
