"""The dashboard: server-rendered pages for a tenant, signed in with one of its API keys."""

from litestar import Controller

from memgate_edge.dashboard.controller import DashboardController
from memgate_edge.dashboard.logs import LogPages
from memgate_edge.dashboard.memory import MemoryPages
from memgate_edge.dashboard.settings import SettingsPages
from memgate_edge.dashboard.usage import UsagePages

# Each page group's controller; the edge's app registers them all.
CONTROLLERS: list[type[Controller]] = [DashboardController, MemoryPages, LogPages, UsagePages, SettingsPages]
