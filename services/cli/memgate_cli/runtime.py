"""Wiring: the clients a process owns, and the services built on them.

`memgate up` builds one `Runtime` and runs all three services on it; `memgate edge`,
`observer` and `context` build one each and run a single service.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import socket
from collections.abc import Iterator
from functools import partial
from typing import TYPE_CHECKING, NamedTuple, Protocol

import uvicorn
from litestar import Litestar

from memgate_bus import Bus
from memgate_core.config import Settings
from memgate_core.encryption import SecretBox
from memgate_core.errors import GatewayError
from memgate_core.tokens import count_tokens
from memgate_providers import ConfigError, ProviderClient
from memgate_store import Stores
from memgate_telemetry.health import Readiness, health_routes
from memgate_vectors import Embedder, RemoteEmbedder, TextEmbedder, VectorIndex, open_vector_index

if TYPE_CHECKING:
    from memgate_context import ContextService

log = logging.getLogger("memgate")


class Runtime:
    """One Postgres pool, one NATS connection, one vector index, one embedder, one HTTP client."""

    def __init__(self, settings: Settings, stores: Stores, bus: Bus, index: VectorIndex,
                 embedder: TextEmbedder,
                 providers: ProviderClient) -> None:
        self.settings = settings
        self.stores = stores
        self.bus = bus
        self.index = index
        self.embedder = embedder
        self.providers = providers

    @classmethod
    async def open(cls, settings: Settings, *, database_url: str, nats_url: str, name: str) -> Runtime:
        # (the secret seals tenants' provider keys; read or created on first use only)
        stores = await Stores.connect(database_url, max_size=20,
                                      secret_box=SecretBox.for_data_dir(settings.secret_key, settings.data_dir))
        bus = None
        try:
            count_tokens("warm up")  # load the tokenizer now, not during the first request
            bus = await Bus.connect(nats_url, name=name)
            await bus.ensure_streams()
            providers = _provider_client()
            embedder = await _embedder(settings.embedding_model, providers)
            index = open_vector_index(qdrant_url=settings.qdrant_url, data_dir=settings.data_dir,
                                      api_key=settings.qdrant_api_key, dim=embedder.dim)
            try:
                await index.ensure()
            except Exception as exc:
                raise SystemExit(f"memgate: the vector index cannot be opened: {exc}") from None
        except BaseException:
            if bus is not None:
                await bus.close()
            await stores.close()
            raise
        return cls(settings, stores, bus, index, embedder, providers)

    def readiness(self) -> Readiness:
        async def nats_ready() -> bool:
            return self.bus.connected

        return {"database": self.stores.db.ready, "nats": nats_ready, "vectors": self.index.ready}

    async def close(self) -> None:
        for closer in (self.providers.close, self.bus.close, self.index.close, self.stores.close):
            try:
                await closer()
            except Exception:
                log.exception("error while closing")


class Service(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class Edge(NamedTuple):
    """The edge's app and the background parts its process starts (in this order) and stops
    (in reverse): the outbox relay, thread notices, usage batches, recordings of streams
    whose clients went away."""

    app: Litestar
    parts: list[Service]


async def _embedder(model: str, providers: ProviderClient) -> TextEmbedder:
    if model == "local":
        embedder = Embedder()
        await embedder.embed_async(["warm up"])  # load the model now, not on the first request
        return embedder
    try:
        return await RemoteEmbedder.probe(partial(providers.embed, model), model)
    except GatewayError as exc:
        raise SystemExit(f"memgate: MEMGATE_EMBEDDING_MODEL={model} does not answer: {exc.message}") from None


def _provider_client() -> ProviderClient:
    try:
        return ProviderClient.from_env()  # env, plus MEMGATE_CONFIG when set
    except ConfigError as exc:
        raise SystemExit(f"memgate: {exc}") from None


def build_edge(runtime: Runtime, *, notices: list[str], observer_name: str,
               local_context: ContextService | None = None) -> Edge:
    """The edge's app; `local_context`: a context service in this process, which the edge
    asks directly instead of over NATS (the same lookup, without the hop)."""
    from memgate_edge.app import create_app
    from memgate_edge.auth import Authenticator
    from memgate_edge.bindings import ThreadBindings
    from memgate_edge.chat.exchange import ExchangeRecorder
    from memgate_edge.chat.service import ChatService
    from memgate_edge.context_client import ContextClient
    from memgate_edge.deps import EdgeDeps
    from memgate_edge.ratelimit import RateLimiter
    from memgate_edge.relay import OutboxRelay
    from memgate_edge.usage import UsageRecorder

    s = runtime.settings
    auth = Authenticator(runtime.stores.keys, cache_seconds=s.auth_cache_seconds)
    limiter = RateLimiter(runtime.stores.ratelimits, default_rpm=s.default_rpm, memory_read_rpm=s.memory_read_rpm,
                          memory_write_rpm=s.memory_write_rpm, enabled=s.rate_limits)
    usage = UsageRecorder(runtime.stores.usage, block_days=s.request_log_days)
    relay = OutboxRelay(runtime.bus, runtime.stores.outbox)
    recorder = ExchangeRecorder(runtime.stores.threads, relay)
    bindings = ThreadBindings(runtime.stores.threads, runtime.bus)
    chat = ChatService(
        runtime.providers, bindings,
        ContextClient(runtime.bus, timeout_ms=s.context_timeout_ms,
                      local=local_context.lookup if local_context else None),
        recorder, usage, runtime.stores.tenant_settings, runtime.stores.provider_keys,
        budget_tokens=s.context_budget_tokens,
        related_budget_tokens=s.related_budget_tokens, keep_blocks=s.request_log_days > 0,
    )
    deps = EdgeDeps(
        settings=s, stores=runtime.stores, auth=auth, chat=chat, recorder=recorder, bindings=bindings,
        index=runtime.index, embedder=runtime.embedder, readiness=runtime.readiness(),
        limiter=limiter, usage=usage, notices=notices, observer_name=observer_name,
    )
    # Stopped in reverse: recordings left in the background first, then the relay publishes them.
    return Edge(create_app(deps), [relay, bindings, usage, recorder])


def health_app(runtime: Runtime) -> Litestar:
    """The small HTTP surface of the observer and context services (probes and metrics)."""
    return Litestar(health_routes(runtime.readiness()), openapi_config=None, logging_config=None)


class _Server(uvicorn.Server):
    # memgate installs its own signal handlers: one Ctrl-C stops every service in order.
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class HttpServer:
    """`app` served on `port` of the settings' host."""

    def __init__(self, app: Litestar, settings: Settings, port: int) -> None:
        config = uvicorn.Config(app, host=settings.http_host, port=port, lifespan="off", access_log=False,
                                log_level="warning", loop="none", http="httptools" if _has("httptools") else "h11",
                                timeout_graceful_shutdown=5, timeout_keep_alive=settings.http_keepalive_seconds)
        self.server = _Server(config)
        self.port_setting = "MEMGATE_HTTP_PORT" if port == settings.http_port else "MEMGATE_HEALTH_PORT"
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._check_port()
        self._task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            if self._task.done():
                self._task.result()  # raises what stopped it (a bind error the probe missed exits here too)
                raise SystemExit("memgate: the HTTP server stopped at start")
            await asyncio.sleep(0.01)

    def _check_port(self) -> None:
        """Every address uvicorn will bind is free: its own bind error is a sys.exit inside its
        task, which left the loop as a traceback."""
        host, port = self.server.config.host, self.server.config.port
        try:
            addresses = {(a[0], a[4]) for a in socket.getaddrinfo(
                host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)}
        except OSError as exc:
            raise SystemExit(f"memgate: cannot listen on {host}:{port}: {exc}") from None
        for family, address in addresses:
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # (as uvicorn's: TIME_WAIT is no obstacle)
                if family == socket.AF_INET6:  # (as the loop's own: IPv6 apart from IPv4)
                    probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                try:
                    probe.bind(address)
                except OSError as exc:
                    raise SystemExit(f"memgate: cannot listen on {host}:{port}: {exc.strerror} (another "
                                     f"server may be using the port: set {self.port_setting} to another)") from None

    async def stop(self) -> None:
        self.server.should_exit = True
        if self._task is not None:
            await self._task


def settle_heap() -> None:
    """Call once everything is loaded: start-up objects (models, tokenizer, app) leave the
    garbage collector's view. Without this a full collection walked them all, and stalled
    requests for 50-65 ms each time (measured under load)."""
    gc.collect()
    gc.freeze()


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None
