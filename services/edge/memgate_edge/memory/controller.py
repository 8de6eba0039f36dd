"""The memory API: threads, their messages and observations, resources, search, delete.

Every thread and resource id given here is checked against the headers' rule first
(`validate_id`): the service and the stores see only ids that could exist.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec
from litestar import Controller, Request, delete, get, patch, post
from litestar.params import Parameter

from memgate_core.errors import InvalidRequest
from memgate_core.ids import validate_id
from memgate_edge.auth import Principal
from memgate_edge.body import decode_body
from memgate_edge.chat.request import QUERY_CHARS
from memgate_edge.memory.imports import parse_import
from memgate_edge.memory.service import MemoryService
from memgate_edge.memory.threads import parse_clone, parse_config, parse_create, parse_deletion, parse_update
from memgate_store.threads import ThreadSummary

MAX_OFFSET = 2**63 - 1  # Postgres OFFSET is a bigint
PAGE = 50  # a list's default page size
MAX_PAGE = 200


class SearchRequest(msgspec.Struct):
    resource_id: str
    query: str
    limit: int = 10


def _page(data: list[Any]) -> dict[str, Any]:
    return {"object": "list", "data": data}


def _counted(data: list[Any], total: int, offset: int) -> dict[str, Any]:
    return {"object": "list", "data": data, "total": total, "has_more": offset + len(data) < total}


class MemoryController(Controller):
    path = "/v1/memory"

    @get("/threads")
    async def list_threads(
        self, request: Request[Any, Any, Any], principal: Principal, memory: MemoryService,
        resource_id: str | None = None, limit: int = Parameter(default=PAGE, ge=1, le=MAX_PAGE),
        offset: int = Parameter(default=0, ge=0, le=MAX_OFFSET),
    ) -> dict[str, Any]:
        """List threads, newest first, optionally of one resource; `total` counts them all."""
        tenant = principal.tenant
        if resource_id is not None:
            validate_id(resource_id, "resource_id")
        threads, total = await memory.threads(tenant, resource_id, limit, offset)
        return _counted(threads, total, offset)

    @post("/threads", status_code=201)
    async def create_thread(self, request: Request[Any, Any, Any], principal: Principal,
                            memory: MemoryService) -> ThreadSummary:
        """Create a thread of a resource: `{"resource_id", "id"?, "title"?, "metadata"?}` (409 if the id is taken)."""
        return await memory.create_thread(principal.tenant, parse_create(await request.body()))

    @get("/threads/{thread_id:str}")
    async def get_thread(self, request: Request[Any, Any, Any], principal: Principal, memory: MemoryService,
                         thread_id: str) -> Any:
        """One thread with its message and observation counts."""
        return await memory.thread(principal.tenant, validate_id(thread_id, "thread_id"))

    @patch("/threads/{thread_id:str}", status_code=200)
    async def update_thread(self, request: Request[Any, Any, Any], principal: Principal, memory: MemoryService,
                            thread_id: str) -> ThreadSummary:
        """Set a thread's `title` (null clears it) and `metadata` (replaced whole); what is left out stays."""
        changes = parse_update(await request.body())
        return await memory.describe_thread(principal.tenant, validate_id(thread_id, "thread_id"), changes)

    @get("/threads/{thread_id:str}/messages")
    async def thread_messages(
        self, request: Request[Any, Any, Any], principal: Principal, memory: MemoryService, thread_id: str,
        limit: int = Parameter(default=PAGE, ge=1, le=MAX_PAGE), offset: int = Parameter(default=0, ge=0, le=MAX_OFFSET),
        order: Literal["asc", "desc"] = "asc",
    ) -> dict[str, Any]:
        """A thread's messages, oldest first (`order=desc`: newest first); `total` counts them all."""
        messages, total = await memory.messages(principal.tenant, validate_id(thread_id, "thread_id"), limit, offset,
                                                newest_first=order == "desc")
        return _counted(messages, total, offset)

    @post("/threads/{thread_id:str}/messages", status_code=201)
    async def import_messages(self, request: Request[Any, Any, Any], principal: Principal, memory: MemoryService,
                              thread_id: str) -> dict[str, Any]:
        """Import past messages with their times; they are observed as if chatted."""
        tenant = principal.tenant
        resource_id, records = parse_import(await request.body())
        return await memory.import_messages(tenant, validate_id(thread_id, "thread_id"), resource_id, records)

    @delete("/threads/{thread_id:str}/messages", status_code=200)
    async def delete_messages(self, request: Request[Any, Any, Any], principal: Principal, memory: MemoryService,
                              thread_id: str) -> dict[str, Any]:
        """Delete messages by id (`{"message_ids": [...]}`), with the observations that came only from them."""
        deletion = parse_deletion(await request.body())
        return await memory.delete_messages(principal.tenant, validate_id(thread_id, "thread_id"),
                                            deletion.message_ids)

    @post("/threads/{thread_id:str}/clone", status_code=201)
    async def clone_thread(self, request: Request[Any, Any, Any], principal: Principal, memory: MemoryService,
                           thread_id: str) -> dict[str, Any]:
        """Copy a thread's messages (all, or by ids, or sent in [start, end)) into a new thread of its resource."""
        clone = parse_clone(await request.body())
        return await memory.clone_thread(principal.tenant, validate_id(thread_id, "thread_id"), clone)

    @get("/threads/{thread_id:str}/observations")
    async def thread_observations(self, request: Request[Any, Any, Any], principal: Principal, memory: MemoryService,
                                  thread_id: str) -> dict[str, Any]:
        """A thread's observations, with provenance (source message ids)."""
        return _page(await memory.observations(principal.tenant, validate_id(thread_id, "thread_id")))

    @get("/threads/{thread_id:str}/observations/record")
    async def observation_record(self, request: Request[Any, Any, Any], principal: Principal, memory: MemoryService,
                                 thread_id: str) -> dict[str, Any]:
        """The thread's observational memory: active observations, generation, tokens, whether it is being
        observed or is due for reflection, and its thresholds."""
        return await memory.observation_record(principal.tenant, validate_id(thread_id, "thread_id"))

    @get("/threads/{thread_id:str}/observations/history")
    async def observation_history(self, request: Request[Any, Any, Any], principal: Principal, memory: MemoryService,
                                  thread_id: str) -> dict[str, Any]:
        """The thread's generations of observations, newest first (0: the Observer's, n: the n-th reflection)."""
        generations = await memory.generations(principal.tenant, validate_id(thread_id, "thread_id"))
        return _counted(generations, len(generations), 0)

    @patch("/threads/{thread_id:str}/observations/config", status_code=200)
    async def observation_config(self, request: Request[Any, Any, Any], principal: Principal, memory: MemoryService,
                                 thread_id: str) -> dict[str, Any]:
        """Set the thread's own thresholds (`observation_tokens`, `reflection_tokens`; null: back to the default)."""
        config = parse_config(await request.body())
        return await memory.set_thresholds(principal.tenant, validate_id(thread_id, "thread_id"), config)

    @delete("/threads/{thread_id:str}", status_code=200)
    async def delete_thread(self, request: Request[Any, Any, Any], principal: Principal, memory: MemoryService,
                            thread_id: str) -> dict[str, Any]:
        """Delete a thread: its messages, observations and vectors."""
        await memory.delete_thread(principal.tenant, validate_id(thread_id, "thread_id"))
        return {"id": thread_id, "object": "thread", "deleted": True}

    @get("/resources")
    async def list_resources(
        self, request: Request[Any, Any, Any], principal: Principal, memory: MemoryService,
        limit: int = Parameter(default=100, ge=1, le=1000), offset: int = Parameter(default=0, ge=0, le=MAX_OFFSET),
    ) -> dict[str, Any]:
        """List resources (users, entities) with their thread counts."""
        return _page(await memory.resources(principal.tenant, limit, offset))

    @delete("/resources/{resource_id:str}", status_code=200)
    async def delete_resource(self, request: Request[Any, Any, Any], principal: Principal, memory: MemoryService,
                              resource_id: str) -> dict[str, Any]:
        """Delete a resource and every thread, message, observation and vector of it."""
        count = await memory.delete_resource(principal.tenant,
                                             validate_id(resource_id, "resource_id"))
        return {"id": resource_id, "object": "resource", "deleted": True, "threads_deleted": count}

    @post("/search", status_code=200)
    async def search(self, request: Request[Any, Any, Any], principal: Principal, memory: MemoryService) -> dict[str, Any]:
        """Hybrid search over a resource's messages and observations."""
        tenant = principal.tenant
        body = decode_body(await request.body(), SearchRequest, what="search request")
        if not 1 <= body.limit <= 100:
            raise InvalidRequest("'limit' must be between 1 and 100.", param="limit")
        if len(body.query) > QUERY_CHARS:
            raise InvalidRequest(f"'query' must be at most {QUERY_CHARS} characters.", code="query_too_long",
                                 param="query")
        return _page(await memory.search(tenant, validate_id(body.resource_id, "resource_id"), body.query, body.limit))
