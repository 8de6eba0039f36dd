"""Liveness, readiness and metrics."""

from __future__ import annotations

import asyncio
from typing import Any

from litestar import Controller, Response, get

from memgate_edge.deps import EdgeDeps
from memgate_telemetry.metrics import render


class HealthController(Controller):
    include_in_schema = False

    @get("/healthz")
    async def healthz(self) -> dict[str, str]:
        """The process is alive."""
        return {"status": "ok"}

    @get("/readyz")
    async def readyz(self, deps: EdgeDeps) -> Response[dict[str, Any]]:
        """Every dependency answers (database, NATS, vector index)."""
        names = list(deps.readiness)
        results = await asyncio.gather(*(deps.readiness[n]() for n in names), return_exceptions=True)
        checks = {n: (r is True) for n, r in zip(names, results)}
        ready = all(checks.values())
        return Response({"status": "ready" if ready else "not_ready", "checks": checks}, status_code=200 if ready else 503)

    @get("/metrics")
    async def metrics(self) -> Response[bytes]:
        """Prometheus metrics."""
        body, content_type = render()
        return Response(body, media_type=content_type)
