"""The dashboard's memory pages: threads (searched, filtered by resource, paged), one thread
with its messages and observation generations, one resource with its threads and what recall
can draw on, memory search, and deleting a thread or a resource after a confirmation page.

Everything is read and deleted through the MemoryService, for the signed-in tenant only: an
id of another tenant's thread or resource is a 404 like one that does not exist.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from litestar import Request, get, post
from litestar.params import Parameter
from litestar.response import Redirect, Template

from memgate_core.errors import InvalidRequest, NotFound
from memgate_core.ids import CLIENT_ID_PATTERN, CLIENT_ID_RULE
from memgate_edge.chat.request import QUERY_CHARS
from memgate_edge.dashboard.pages import DashboardPages, same_origin
from memgate_edge.deps import EdgeDeps
from memgate_edge.memory.service import MemoryService
from memgate_store.observations import Generation, Observation

PAGE = 50  # threads a page lists
RESOURCE_CHOICES = 200  # resources the filter offers (the most recently active)
RESOURCE_OBSERVATIONS = 200  # of a resource's current observations, the newest shown
MESSAGES_SHOWN = 1000  # of a thread's messages, the newest shown
FAILURES_SHOWN = 20
SEARCH_RESULTS = 20
MATCHING_CHARS = 200  # of the threads list's search text
MAX_PAGE = 2**31  # (so that an offset stays a bigint)
Requested = Request[Any, Any, Any]


def _link(path: str, **params: str | int | None) -> str:
    """`path` with the given query parameters (those None or empty left out)."""
    query = urlencode({k: v for k, v in params.items() if v not in (None, "")})
    return f"{path}?{query}" if query else path


def _valid_id(value: str | None) -> bool:
    return value is not None and CLIENT_ID_PATTERN.fullmatch(value) is not None


@dataclass
class GenerationView:
    """One generation of a thread's observations (0: observed from messages; n: the n-th reflection)."""

    summary: Generation
    observations: list[Observation] = field(default_factory=list)


@dataclass
class Found:
    """A memory search hit as the search page shows it."""

    score: float
    kind: str  # "observation" | "message"
    text: str
    thread_id: str
    resource_id: str
    when: str  # its date (and time when known), UTC
    role: str | None = None  # a message's


def _found(hit: dict[str, Any]) -> Found:
    kind = str(hit.get("kind") or "observation")  # (points indexed before kinds had none: observations)
    if kind == "message" and isinstance(hit.get("created_at"), int | float):
        when = datetime.fromtimestamp(hit["created_at"], UTC).strftime("%Y-%m-%d %H:%M")
    else:
        when = " ".join(str(hit[k]) for k in ("observed_on", "observed_time") if hit.get(k))
    return Found(float(hit["score"]), kind, str(hit.get("text", "")), str(hit.get("thread_id", "")),
                 str(hit.get("resource_id", "")), when, hit.get("role"))


def _generations(summaries: list[Generation], observations: list[Observation]) -> list[GenerationView]:
    """The thread's generations, newest first, each with its observations in time order."""
    views = {g.generation: GenerationView(g) for g in summaries}
    for o in observations:
        if o.generation in views:  # (one written between the two reads waits for the next view)
            views[o.generation].observations.append(o)
    return list(views.values())


class MemoryPages(DashboardPages):
    path = "/dashboard"

    # ------------------------------------------------------------------ threads

    @get("/threads")
    async def threads(
        self, deps: EdgeDeps, tenant: str, memory: MemoryService, resource_id: str | None = None,
        q: str | None = None, page: int = Parameter(default=1, ge=1, le=MAX_PAGE),
        deleted_thread: str | None = None, deleted_resource: str | None = None,
    ) -> Template:
        """The tenant's threads, newest first: a page of PAGE, searched by id or title, of one resource or all."""
        matching = (q or "").strip() or None
        resource_id = resource_id or None
        error = None
        if resource_id is not None and not _valid_id(resource_id):
            error = f"That is no resource id ({CLIENT_ID_RULE})."
        elif matching is not None and (len(matching) > MATCHING_CHARS or "\x00" in matching):
            error = f"Search for at most {MATCHING_CHARS} characters (and no NUL)."
        threads, total = ([], 0) if error else await memory.threads(tenant, resource_id, PAGE, (page - 1) * PAGE,
                                                                       matching)
        resources = [r.resource_id for r in await memory.resources(tenant, RESOURCE_CHOICES, 0)]
        done = None
        if _valid_id(deleted_thread):
            done = f"Thread {deleted_thread} was deleted, with its messages, observations and vectors."
        elif _valid_id(deleted_resource):
            done = f"Resource {deleted_resource} was deleted, with all its threads."
        pages = max(1, math.ceil(total / PAGE))
        result = self._page(
            "threads.html", deps, tenant=tenant, active="Threads", threads=threads, total=total, q=matching or "",
            resource_id=resource_id, resources=resources, error=error, done=done, page=page, pages=pages,
            newer=_link("/dashboard/threads", q=matching, resource_id=resource_id, page=page - 1) if page > 1 else None,
            older=_link("/dashboard/threads", q=matching, resource_id=resource_id, page=page + 1)
            if page < pages else None)
        if error:
            result.status_code = 400
        return result

    @get("/threads/{thread_id:str}")
    async def thread(self, deps: EdgeDeps, tenant: str, memory: MemoryService,
                     thread_id: str) -> Template:
        """One thread: its messages beside its current observations, its observation
        generations with their provenance, current task and observer failures."""
        try:
            thread = await memory.thread(tenant, self._thread_id(thread_id))
            observations = await memory.observations(tenant, thread_id)
            generations = await memory.generations(tenant, thread_id)
            newest, _ = await memory.messages(tenant, thread_id, MESSAGES_SHOWN, newest_first=True)
        except NotFound:
            return self._not_found(deps, tenant, f"There is no thread {thread_id} here.")
        return self._page(
            "thread.html", deps, tenant=tenant, active="Threads", thread=thread,
            messages=newest[::-1],  # (in time order)
            observations=[o for o in observations if o.superseded_at is None],
            generations=_generations(generations, observations),
            by_id={o.id: o for o in observations},
            state=await deps.stores.observations.thread_memory(tenant, thread_id),
            failures=await deps.stores.observations.failures(tenant, thread_id, limit=FAILURES_SHOWN),
        )

    @get("/threads/{thread_id:str}/delete")
    async def confirm_thread_delete(self, deps: EdgeDeps, tenant: str, memory: MemoryService,
                                    thread_id: str) -> Template:
        """Asks before deleting a thread (the form posts to this same path)."""
        try:
            thread = await memory.thread(tenant, self._thread_id(thread_id))
        except NotFound:
            return self._not_found(deps, tenant, f"There is no thread {thread_id} here.")
        return self._page(
            "confirm_delete.html", deps, tenant=tenant, active="Threads", what="thread", subject=thread.thread_id,
            details=f"{thread.message_count} messages and {thread.observation_count} observations, "
                    "with their vectors (recall will no longer find them).",
            action=f"/dashboard/threads/{thread.thread_id}/delete", cancel=f"/dashboard/threads/{thread.thread_id}")

    @post("/threads/{thread_id:str}/delete", status_code=303, guards=[same_origin])
    async def delete_thread(self, deps: EdgeDeps, tenant: str, memory: MemoryService,
                            thread_id: str) -> Template | Redirect:
        try:
            await memory.delete_thread(tenant, self._thread_id(thread_id))
        except NotFound:
            return self._not_found(deps, tenant, f"There is no thread {thread_id} here.")
        return Redirect(_link("/dashboard/threads", deleted_thread=thread_id), status_code=303)

    # ------------------------------------------------------------------ resources

    @get("/resources/{resource_id:str}")
    async def resource(self, deps: EdgeDeps, tenant: str, memory: MemoryService, resource_id: str,
                       page: int = Parameter(default=1, ge=1, le=MAX_PAGE)) -> Template:
        """One resource: its threads (a page of PAGE) and its newest current observations,
        each with the thread it came from."""
        missing = f"There is no resource {resource_id} here."
        if not _valid_id(resource_id):
            return self._not_found(deps, tenant, missing)
        threads, total = await memory.threads(tenant, resource_id, PAGE, (page - 1) * PAGE)
        if total == 0:  # (a resource is its threads: without one it is not there)
            return self._not_found(deps, tenant, missing)
        observations = await memory.resource_observations(tenant, resource_id, RESOURCE_OBSERVATIONS + 1)
        pages = max(1, math.ceil(total / PAGE))
        path = f"/dashboard/resources/{resource_id}"
        return self._page(
            "resource.html", deps, tenant=tenant, active="Threads", resource_id=resource_id, threads=threads,
            total=total, page=page, pages=pages, observations=observations[:RESOURCE_OBSERVATIONS],
            more_observations=len(observations) > RESOURCE_OBSERVATIONS,
            newer=_link(path, page=page - 1) if page > 1 else None,
            older=_link(path, page=page + 1) if page < pages else None)

    @get("/resources/{resource_id:str}/delete")
    async def confirm_resource_delete(self, deps: EdgeDeps, tenant: str, memory: MemoryService,
                                      resource_id: str) -> Template:
        """Asks before deleting a resource and all its threads."""
        _, total = await memory.threads(tenant, resource_id, 1, 0) if _valid_id(resource_id) else ([], 0)
        if total == 0:
            return self._not_found(deps, tenant, f"There is no resource {resource_id} here.")
        return self._page(
            "confirm_delete.html", deps, tenant=tenant, active="Threads", what="resource", subject=resource_id,
            details=f"all its {total} thread{'s' if total != 1 else ''}, with their messages, observations and "
                    "vectors (recall will no longer find them).",
            action=f"/dashboard/resources/{resource_id}/delete", cancel=f"/dashboard/resources/{resource_id}")

    @post("/resources/{resource_id:str}/delete", status_code=303, guards=[same_origin])
    async def delete_resource(self, deps: EdgeDeps, tenant: str, memory: MemoryService,
                              resource_id: str) -> Template | Redirect:
        try:
            if not _valid_id(resource_id):
                raise NotFound("no such resource")
            await memory.delete_resource(tenant, resource_id)
        except NotFound:
            return self._not_found(deps, tenant, f"There is no resource {resource_id} here.")
        return Redirect(_link("/dashboard/threads", deleted_resource=resource_id), status_code=303)

    # ------------------------------------------------------------------ search

    @get("/search")
    async def search(self, deps: EdgeDeps, tenant: str, memory: MemoryService, q: str | None = None,
                     resource_id: str | None = None, thread_id: str | None = None) -> Template:
        """Memory search (as the search API: messages and observations by meaning and
        keywords) over one thread, one resource, or the tenant's resources."""
        query, resource_id, thread_id = (q or "").strip(), resource_id or None, (thread_id or "").strip() or None
        resources = [r.resource_id for r in await memory.resources(tenant, RESOURCE_CHOICES, 0)]
        status, error, found, searched = 200, None, None, None
        try:
            if len(query) > QUERY_CHARS or "\x00" in query:
                raise InvalidRequest(f"Search for at most {QUERY_CHARS} characters (and no NUL).")
            for value, what in ((resource_id, "resource"), (thread_id, "thread")):
                if value is not None and not _valid_id(value):
                    raise InvalidRequest(f"That is no {what} id ({CLIENT_ID_RULE}).")
            if query:
                result = await memory.search_memory(tenant, query, resource_id=resource_id, thread_id=thread_id,
                                                    limit=SEARCH_RESULTS)
                found, searched = [_found(h) for h in result.hits], result
        except (InvalidRequest, NotFound) as exc:
            status, error = exc.status, exc.message
        result_page = self._page(
            "search.html", deps, tenant=tenant, active="Threads", q=query, resource_id=resource_id,
            thread_id=thread_id or "", resources=resources, error=error, found=found, searched=searched)
        result_page.status_code = status
        return result_page

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _thread_id(thread_id: str) -> str:
        """A thread id from a path: one breaking the id rule names no thread (a 404, as another tenant's)."""
        if not _valid_id(thread_id):
            raise NotFound("no such thread")
        return thread_id

    def _not_found(self, deps: EdgeDeps, tenant: str, message: str) -> Template:
        page = self._page("not_found.html", deps, tenant=tenant, active="Threads", message=message)
        page.status_code = 404
        return page
