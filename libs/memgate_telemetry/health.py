"""Liveness, readiness and metrics: the same three routes on every memgate process."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from litestar import Response, get
from litestar.handlers import HTTPRouteHandler

from memgate_telemetry.metrics import render

Readiness = Mapping[str, Callable[[], Awaitable[bool]]]  # a check per dependency (database, nats, vectors...)


def health_routes(readiness: Readiness) -> list[HTTPRouteHandler]:
    @get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        """The process is alive."""
        return {"status": "ok"}

    @get("/readyz", include_in_schema=False)
    async def readyz() -> Response[dict[str, Any]]:
        """Every dependency answers."""
        names = list(readiness)
        results = await asyncio.gather(*(readiness[n]() for n in names), return_exceptions=True)
        checks = {n: (r is True) for n, r in zip(names, results, strict=True)}
        ready = all(checks.values())
        return Response({"status": "ready" if ready else "not_ready", "checks": checks},
                        status_code=200 if ready else 503)

    @get("/metrics", include_in_schema=False)
    async def metrics() -> Response[bytes]:
        """Prometheus metrics."""
        body, content_type = render()
        return Response(body, media_type=content_type)

    return [healthz, readyz, metrics]
