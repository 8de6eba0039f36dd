"""The edge's Litestar application: routes, dependencies, error handling, templates."""

from __future__ import annotations

from pathlib import Path

from litestar import Litestar
from litestar.contrib.jinja import JinjaTemplateEngine
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.template import TemplateConfig

from memgate_edge.access import provide_operator, provide_principal, rate_limit_headers
from memgate_edge.admin.controller import AdminController
from memgate_edge.admin.service import AdminService
from memgate_edge.chat.controller import ChatController
from memgate_edge.dashboard import CONTROLLERS as DASHBOARD
from memgate_edge.deps import EdgeDeps
from memgate_edge.errors import EXCEPTION_HANDLERS
from memgate_edge.memory.controller import MemoryController
from memgate_edge.memory.service import MemoryService
from memgate_edge.messages.controller import MessagesController
from memgate_store.observations import MemoryLimits
from memgate_telemetry.health import health_routes


def create_app(deps: EdgeDeps) -> Litestar:
    memory = MemoryService(deps.stores, deps.index, deps.embedder, deps.recorder, deps.bindings,
                           defaults=MemoryLimits(deps.settings.activation_tokens, deps.settings.observation_budget_tokens))
    admin = AdminService(deps.stores, deps.auth)
    return Litestar(
        route_handlers=[ChatController, MessagesController, MemoryController, AdminController, *DASHBOARD,
                        *health_routes(deps.readiness)],
        dependencies={
            "deps": Provide(lambda: deps, use_cache=True, sync_to_thread=False),
            "memory": Provide(lambda: memory, use_cache=True, sync_to_thread=False),
            "admin": Provide(lambda: admin, use_cache=True, sync_to_thread=False),
            "principal": Provide(provide_principal),
            "operator": Provide(provide_operator),
        },
        before_send=[rate_limit_headers],
        exception_handlers=EXCEPTION_HANDLERS,
        request_max_body_size=deps.settings.max_body_bytes,
        template_config=TemplateConfig(
            directory=Path(__file__).parent / "dashboard" / "templates", engine=JinjaTemplateEngine
        ),
        openapi_config=OpenAPIConfig(title="memgate", version="0.1.0", path="/docs"),
        logging_config=None,  # the process configures logging once (memgate_cli)
        debug=False,
    )
