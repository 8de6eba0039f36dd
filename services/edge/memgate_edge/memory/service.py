"""The memory API's operations over Postgres and the vector index."""

from __future__ import annotations

import time
from typing import Any

import msgspec

from memgate_core.errors import Conflict, InvalidRequest, NotFound
from memgate_core.events import MessageRecord, stored_times
from memgate_core.ids import new_id
from memgate_edge.bindings import ThreadBindings
from memgate_edge.chat.exchange import ExchangeRecorder
from memgate_edge.memory.imports import exchange_event, group_exchanges, stored_view
from memgate_edge.memory.threads import (
    MAX_CLONED_MESSAGES,
    ObservationConfig,
    ThreadClone,
    ThreadCreate,
    ThreadUpdate,
)
from memgate_store import Stores
from memgate_store.observations import Generation, MemoryLimits, Observation, ObservationRecord
from memgate_store.threads import ResourceSummary, StoredMessage, ThreadSummary
from memgate_vectors import TextEmbedder, VectorHit, VectorIndex
from memgate_vectors.messages import ThreadOf, message_points
from memgate_vectors.points import message_point_id

SEARCHED_RESOURCES = 20  # a search of all the tenant's memory looks into this many resources, newest first
THREAD_CANDIDATES = 100  # of its resource's best hits, a search of one thread keeps its own
_INTERNAL = frozenset({"tenant", "keyword_text", "scope", "tokens", "slight"})  # payload keys a search result does not show


class MemorySearch(msgspec.Struct, frozen=True):
    """What `search_memory` found (as the search API shows hits: score and payload) and where it looked."""

    hits: list[dict[str, Any]]
    resources: list[str]  # the resources searched
    more_resources: bool  # the tenant has more resources than were searched


class MemoryService:
    def __init__(self, stores: Stores, index: VectorIndex, embedder: TextEmbedder, recorder: ExchangeRecorder,
                 bindings: ThreadBindings, *, defaults: MemoryLimits) -> None:
        self.stores = stores
        self.defaults = defaults  # the process's observational-memory thresholds
        self.index = index
        self.embedder = embedder
        self.recorder = recorder
        self.bindings = bindings

    async def thread(self, tenant: str, thread_id: str) -> ThreadSummary:
        found = await self.stores.threads.get(tenant, thread_id)
        if found is None:
            raise thread_not_found(thread_id)
        return found

    async def threads(self, tenant: str, resource_id: str | None, limit: int, offset: int,
                      matching: str | None = None) -> tuple[list[ThreadSummary], int]:
        """A page of threads, newest first, and their total; `matching`: only those whose id
        or title contains it."""
        if matching is not None and "\x00" in matching:  # (Postgres text cannot hold it)
            raise InvalidRequest("The search text may not contain NUL characters.", param="matching")
        return await self.stores.threads.page(tenant, resource_id=resource_id, matching=matching, limit=limit,
                                              offset=offset)

    async def create_thread(self, tenant: str, details: ThreadCreate, *, param: str = "id") -> ThreadSummary:
        """`param`: the field that named the thread's id (for a 409)."""
        thread_id = details.id or new_id("thread")
        created = await self.stores.threads.create(tenant, thread_id, details.resource_id, title=details.title,
                                                   metadata=details.metadata)
        if created is None:
            raise Conflict(f"Thread '{thread_id}' exists already.", code="thread_exists", param=param)
        return created

    async def describe_thread(self, tenant: str, thread_id: str, changes: ThreadUpdate) -> ThreadSummary:
        updated = await self.stores.threads.describe(tenant, thread_id, title=changes.title, metadata=changes.metadata)
        if updated is None:
            raise thread_not_found(thread_id)
        return updated

    async def messages(self, tenant: str, thread_id: str, limit: int, offset: int = 0,
                       newest_first: bool = False) -> tuple[list[StoredMessage], int]:
        await self.thread(tenant, thread_id)
        return await self.stores.threads.message_page(tenant, thread_id, limit=limit, offset=offset,
                                                      newest_first=newest_first)

    async def import_messages(self, tenant: str, thread_id: str, resource_id: str | None,
                              records: list[MessageRecord]) -> dict[str, Any]:
        """Record validated messages (see `memory.imports`) as chat would, as exchanges, all
        in one transaction. The thread is created for `resource_id` if it does not exist
        (400 without one); bound to another resource, it is a 404."""
        begun_at = time.time()  # a delete of the thread before this request does not refuse its old-dated messages
        if resource_id is None:
            found = await self.stores.threads.get(tenant, thread_id)
            if found is None:
                raise InvalidRequest(f"Thread '{thread_id}' does not exist; send 'resource_id' to create it.",
                                     code="missing_resource_id", param="resource_id")
            resource_id = found.resource_id
        else:
            await self.bindings.check(tenant, thread_id, resource_id, param="resource_id")
        exchanges = group_exchanges(records)
        await self.recorder.record([exchange_event(tenant, thread_id, resource_id, messages)
                                    for messages in exchanges], begun_at=begun_at)
        return {"object": "list", "thread_id": thread_id, "resource_id": resource_id,
                "data": [stored_view(r) for r in records], "exchanges": len(exchanges)}

    async def clone_thread(self, tenant: str, thread_id: str, clone: ThreadClone) -> dict[str, Any]:
        """A new thread of the same resource holding copies of the chosen messages (new ids,
        the same times), recorded as an import is: the observer observes them again, dated
        by their times."""
        begun_at = time.time()
        source = await self.thread(tenant, thread_id)
        messages = await self.stores.threads.selected_messages(
            tenant, thread_id, ids=clone.message_ids, start=clone.start, end=clone.end, limit=MAX_CLONED_MESSAGES + 1)
        if len(messages) > MAX_CLONED_MESSAGES:
            raise InvalidRequest(f"A clone may copy at most {MAX_CLONED_MESSAGES} messages; choose fewer with "
                                 "'message_ids' or 'start' and 'end'.", code="too_many_messages", param="message_ids")
        created = await self.create_thread(tenant, ThreadCreate(
            source.resource_id, clone.new_thread_id, source.title if clone.title is None else clone.title,
            source.metadata), param="new_thread_id")
        times = stored_times(m.created_at.timestamp() for m in messages)  # (messages of one time keep their order)
        records = [MessageRecord(new_id("msg"), m.role, m.content, at) for m, at in zip(messages, times, strict=True)]
        exchanges = group_exchanges(records)
        try:
            await self.recorder.record([exchange_event(tenant, created.id, source.resource_id, group)
                                        for group in exchanges], begun_at=begun_at)
        except BaseException:
            await self.stores.threads.delete(tenant, created.id)  # all or nothing: no empty clone is left
            raise
        return {"thread": await self.thread(tenant, created.id), "cloned_messages": len(records),
                "exchanges": len(exchanges)}

    async def delete_messages(self, tenant: str, thread_id: str, ids: list[str]) -> dict[str, Any]:
        """Delete messages, the observations that came only from them, and the vectors of both;
        the messages that followed them are indexed again (each point holds the text of the
        message it follows)."""
        # Vectors first (a crash after the rows go must not leave them searchable), and again
        # after, as for a thread (an observer commit in flight). Only the thread's own: an id
        # of another thread's message names a point of that thread, which stays.
        thread = await self.thread(tenant, thread_id)
        await self.index.delete([message_point_id(tenant, i)
                                 for i in await self.stores.threads.message_ids(tenant, thread_id, ids)])
        deleted = await self.stores.threads.delete_messages(tenant, thread_id, ids)
        if deleted is None:
            raise thread_not_found(thread_id)
        # The messages that followed them go too (their points hold the deleted text), then
        # come back indexed with what they follow now: should that fail, none still holds it.
        followers = await self.stores.threads.followers(tenant, thread_id, deleted.keys)
        await self.index.delete([*(message_point_id(tenant, i) for i in deleted.message_ids),
                                 *deleted.observation_ids, *(message_point_id(tenant, f.id) for f, _ in followers)])
        await self._index_again(ThreadOf(tenant, thread.resource_id, thread_id), followers)
        return {"object": "thread.messages.deleted", "thread_id": thread_id, "deleted": True,
                "message_ids": deleted.message_ids, "observation_ids": deleted.observation_ids}

    async def _index_again(self, thread: ThreadOf, followers: list[tuple[StoredMessage, str | None]]) -> None:
        """Index these messages again, each following the text given (blank ones have no point,
        as the observer indexes them); those deleted meanwhile stay out."""
        points = []
        for follower, follows in followers:
            if follower.content.strip():
                record = MessageRecord(follower.id, follower.role, follower.content, follower.created_at.timestamp())
                points += await message_points(self.embedder, thread, [record], follows)
        if not points:
            return
        observations = self.stores.observations
        async with self.stores.db.pool.acquire() as conn, conn.transaction():
            await observations.lock_thread(conn, thread.tenant, thread.thread_id)  # (a delete of them waits)
            alive = await observations.alive_messages(conn, thread.tenant, [str(p.payload["message_id"]) for p in points])
            await self.index.upsert([p for p in points if p.payload["message_id"] in alive])

    async def observations(self, tenant: str, thread_id: str) -> list[Observation]:
        await self.thread(tenant, thread_id)
        return await self.stores.observations.for_thread(tenant, thread_id)

    async def observation_record(self, tenant: str, thread_id: str) -> dict[str, Any]:
        """The thread's observational-memory state: its active observations, their generation
        and tokens, what waits to be observed, and its thresholds."""
        record = await self._record(tenant, thread_id)
        thresholds = await self._thresholds(tenant, thread_id, record)
        active = await self.stores.observations.for_thread(tenant, thread_id, active_only=True)
        return {
            "object": "thread.observation_record", "thread_id": thread_id, "generation": record.generation,
            "active_observations": active, "active_tokens": record.active_tokens,
            "buffered_observations": record.buffered_observations,
            "unobserved_message_tokens": record.unobserved_message_tokens,
            "pending_exchanges": record.pending_exchanges, "current_task": record.current_task,
            # Observing: exchanges recorded and not yet observed. Reflecting: the active
            # observations exceed the reflection threshold, so the Reflector rewrites them next.
            "observing": record.pending_exchanges > 0,
            "reflecting": record.active_tokens > thresholds["reflection_tokens"],
            "thresholds": thresholds,
        }

    async def _record(self, tenant: str, thread_id: str) -> ObservationRecord:
        record = await self.stores.observations.record(tenant, thread_id)
        if record is None:
            raise thread_not_found(thread_id)
        return record

    async def _thresholds(self, tenant: str, thread_id: str, record: ObservationRecord) -> dict[str, Any]:
        """The thresholds that apply to the thread, and which of them are its own."""
        limits = await self.stores.observations.limits(
            tenant, thread_id, activation_tokens=self.defaults.activation_tokens,
            observation_budget_tokens=self.defaults.observation_budget_tokens)
        return {"observation_tokens": limits.activation_tokens, "reflection_tokens": limits.observation_budget_tokens,
                "thread_observation_tokens": record.thread_activation_tokens,
                "thread_reflection_tokens": record.thread_observation_budget_tokens}

    async def set_thresholds(self, tenant: str, thread_id: str, config: ObservationConfig) -> dict[str, Any]:
        if not await self.stores.observations.set_thread_limits(
                tenant, thread_id, activation_tokens=config.observation_tokens,
                observation_budget_tokens=config.reflection_tokens):
            raise thread_not_found(thread_id)
        return await self._thresholds(tenant, thread_id, await self._record(tenant, thread_id))

    async def generations(self, tenant: str, thread_id: str) -> list[Generation]:
        await self.thread(tenant, thread_id)
        return await self.stores.observations.generations(tenant, thread_id)

    async def resources(self, tenant: str, limit: int, offset: int) -> list[ResourceSummary]:
        return await self.stores.threads.resources(tenant, limit=limit, offset=offset)

    async def resource_observations(self, tenant: str, resource_id: str, limit: int) -> list[Observation]:
        """The resource's newest current observations over all its threads (what recall draws on)."""
        return await self.stores.observations.current_for_resource(tenant, resource_id, limit=limit)

    async def delete_thread(self, tenant: str, thread_id: str) -> None:
        # Vectors first: if Postgres then fails, a retry still finds the thread to delete.
        # And once more after: an observer commit in flight (which the Postgres delete waits
        # for) may have indexed vectors in between.
        await self.thread(tenant, thread_id)
        await self.index.delete_thread(tenant, thread_id)
        try:
            await self.stores.threads.delete(tenant, thread_id)
        finally:  # what the edges hold of it goes, whatever happens next
            await self.bindings.deleted(tenant, [thread_id])
        await self.index.delete_thread(tenant, thread_id)

    async def delete_resource(self, tenant: str, resource_id: str) -> int:
        await self.index.delete_resource(tenant, resource_id)
        deleted = await self.stores.threads.delete_resource(tenant, resource_id)
        await self.bindings.deleted(tenant, deleted)
        await self.index.delete_resource(tenant, resource_id)  # see delete_thread
        if not deleted:
            raise NotFound(f"Resource '{resource_id}' was not found.", code="resource_not_found")
        return len(deleted)

    async def search(self, tenant: str, resource_id: str, query: str, limit: int) -> list[dict[str, Any]]:
        vector = (await self.embedder.embed_async([query]))[0]
        hits = await self.index.search(vector, tenant=tenant, resource_id=resource_id, limit=limit, query_text=query)
        return [_shown(h) for h in hits]

    async def search_memory(self, tenant: str, query: str, *, resource_id: str | None = None,
                            thread_id: str | None = None, limit: int = 10) -> MemorySearch:
        """Search one thread (404 if the tenant has none of that id), one resource, or, with
        neither, the tenant's most recently active resources (at most SEARCHED_RESOURCES),
        best first. The index searches within one resource: a thread's hits are those of
        its resource's best THREAD_CANDIDATES; several resources' are merged by score (each
        search scores the same way: cosine, or the same fusion of the same query's rankings)."""
        if thread_id is not None:
            thread = await self.thread(tenant, thread_id)
            if resource_id is not None and resource_id != thread.resource_id:
                return MemorySearch([], [resource_id], more_resources=False)  # (that resource has no such thread)
            resources = [thread.resource_id]
        elif resource_id is not None:
            resources = [resource_id]
        else:
            resources = [r.resource_id for r in await self.resources(tenant, SEARCHED_RESOURCES + 1, 0)]
        more = len(resources) > SEARCHED_RESOURCES
        resources = resources[:SEARCHED_RESOURCES]
        if not resources:
            return MemorySearch([], [], more_resources=False)
        vector = (await self.embedder.embed_async([query]))[0]
        hits: list[VectorHit] = []
        for resource in resources:
            found = await self.index.search(vector, tenant=tenant, resource_id=resource, query_text=query,
                                            limit=THREAD_CANDIDATES if thread_id is not None else limit)
            hits.extend(h for h in found if thread_id is None or h.payload.get("thread_id") == thread_id)
        hits.sort(key=lambda h: h.score, reverse=True)
        return MemorySearch([_shown(h) for h in hits[:limit]], resources, more_resources=more)


def _shown(hit: VectorHit) -> dict[str, Any]:
    return {"score": hit.score, **{k: v for k, v in hit.payload.items() if k not in _INTERNAL}}


def thread_not_found(thread_id: str) -> NotFound:
    return NotFound(f"Thread '{thread_id}' was not found.", code="thread_not_found")
