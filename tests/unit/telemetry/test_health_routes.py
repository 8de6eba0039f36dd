"""The health routes every memgate process serves."""

from __future__ import annotations

import warnings

from litestar import Litestar
from litestar.testing import TestClient

from memgate_telemetry.health import health_routes


async def _up() -> bool:
    return True


async def _down() -> bool:
    return False


def test_health_routes_are_built_without_warnings() -> None:
    """Building them warns about nothing (`memgate up` printed a Litestar warning at each start)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        routes = health_routes({"database": _up})
    assert sorted(path for route in routes for path in route.paths) == ["/healthz", "/metrics", "/readyz"]


def test_readiness_names_each_check_and_fails_when_one_does() -> None:
    with TestClient(Litestar(route_handlers=health_routes({"database": _up, "nats": _down}))) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json() == {"status": "not_ready", "checks": {"database": True, "nats": False}}
