"""The Logs pages: every request a row, and one request with the memory it was given and why."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from litestar import get
from litestar.response import Template

from memgate_edge.dashboard.pages import DashboardPages
from memgate_edge.deps import EdgeDeps
from memgate_store.request_log import PAGE_SIZE, LogFilter

DEFAULT_DAYS = 7
MAX_PAGE = 10_000  # (offsets beyond are of no use to anyone reading a page)

def day(value: str | None, name: str) -> datetime | None:
    """A YYYY-MM-DD form field as midnight UTC (None: empty)."""
    if not value:
        return None
    try:
        when = datetime.combine(datetime.strptime(value, "%Y-%m-%d").date(), time(), UTC)
    except ValueError:
        raise ValueError(f"{name} must be a date like 2026-01-31, got {value[:40]!r}") from None
    if not 2000 <= when.year <= 9000:  # (and a day later is still a date)
        raise ValueError(f"{name} must be a date between the years 2000 and 9000, got {value[:40]!r}")
    return when


def log_filter(since: str | None, until: str | None, status: str | None, model: str | None,
               thread: str | None) -> LogFilter:
    """The Logs page's query as a filter; `ValueError` says which field is wrong."""
    start = day(since, "From")
    end = day(until, "To")
    if status and not (status in ("ok", "error") or (status.isascii() and status.isdigit() and len(status) == 3)):
        raise ValueError(f"Status must be ok, error or a status code like 429, got {status[:40]!r}")
    for name, value in (("Model", model), ("Thread", thread)):
        if value and (len(value) > 256 or not value.isprintable()):
            raise ValueError(f"{name} must be at most 256 printable characters")
    end = end + timedelta(days=1) if end else None  # (the whole "to" day)
    return LogFilter(
        since=start or (end or datetime.now(UTC)) - timedelta(days=DEFAULT_DAYS),
        until=end, status=status or None, model=model or None, thread_id=thread or None,
    )


class LogPages(DashboardPages):
    path = "/dashboard/logs"

    @get("/")
    async def logs(self, deps: EdgeDeps, tenant: str, since: str | None = None,
                   until: str | None = None, status: str | None = None, model: str | None = None,
                   thread: str | None = None, page: int = 1) -> Template:
        """The tenant's requests, newest first, filtered by date, status, model and thread."""
        query = {"since": since or "", "until": until or "", "status": status or "", "model": model or "",
                 "thread": thread or ""}
        page = min(max(page, 1), MAX_PAGE)
        try:
            where = log_filter(since, until, status, model, thread)
        except ValueError as exc:
            view = self._page("logs.html", deps, tenant=tenant, active="Logs", entries=[], error=str(exc),
                              query=query, models=[], page=1, more=False)
            view.status_code = 400
            return view
        log = deps.stores.request_log
        entries = await log.page(tenant, where, offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE + 1)
        models = await log.models(tenant, where.since)
        return self._page("logs.html", deps, tenant=tenant, active="Logs", entries=entries[:PAGE_SIZE], error=None,
                          query=query, models=models, page=page, more=len(entries) > PAGE_SIZE)

    @get("/{request_id:str}")
    async def entry(self, deps: EdgeDeps, tenant: str, request_id: str) -> Template:
        """One request: its row, its trace id, and the memory block it was given, item by item."""
        found = await deps.stores.request_log.entry(tenant, request_id) if request_id.isprintable() else None
        if found is None:
            view = self._page("log_entry.html", deps, tenant=tenant, active="Logs", entry=None, memory=None,
                              request_id=request_id)
            view.status_code = 404
            return view
        entry, memory = found
        return self._page("log_entry.html", deps, tenant=tenant, active="Logs", entry=entry, memory=memory,
                          request_id=request_id)
