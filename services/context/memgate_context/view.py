"""A cached, always-current view of each thread's memory inputs.

A lookup of a cached thread costs one query: the thread's change counters together with
any messages stored by transactions that were still running, or not begun, when the view
last read (`Unseen`): those are appended.
`observations_version` moved (activation, reflection) or the thread was re-created: full
reload.
Correct with any number of context replicas and edges, with no invalidation messages.

Lookups of one thread queue for its view; a lookup whose turn comes after a refresh that
*began* after it arrived takes that refresh's result without a query of its own (the
refresh saw everything committed before it arrived). A busy thread costs about one query
per round of waiting lookups, not one per lookup.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from datetime import UTC, datetime
from functools import lru_cache

import msgspec

from memgate_core.context import MessageItem, ObservationItem, message_fingerprint
from memgate_core.tokens import count_tokens
from memgate_store import Stores
from memgate_store.threads import StoredMessage, ThreadVersions, Unseen

RECENT_MESSAGE_LIMIT = 400  # raw messages kept per thread view (the budget decides how many go in)
CACHE_THREADS = 10_000

OPEN_TAG = "<memgate_memory>"
CLOSE_TAG = "</memgate_memory>"


class Line(msgspec.Struct, frozen=True):
    """One rendered line of the block, with its token cost."""

    text: str
    tokens: int


class ObservationLine(msgspec.Struct, frozen=True):
    item: ObservationItem
    line: Line


class MessageLine(msgspec.Struct, frozen=True):
    item: MessageItem
    line: Line
    key: tuple[datetime, str]  # (created_at, id): the order messages are appended in
    fingerprint: str  # to recognise the same message in a client's resent history


class ThreadView(msgspec.Struct):
    created_at: datetime
    observations_version: int
    related: bool
    observations: list[ObservationLine]
    messages: list[MessageLine]
    unseen: Unseen = Unseen(0, [])  # transactions the last read could not see: their stores are new
    ids: set[str] = msgspec.field(default_factory=set)  # of `messages`, to skip ones already held
    observation_tokens: int = 0  # of `observations`' lines, and of `messages`' (kept as they change)
    message_tokens: int = 0
    read_at: float = 0.0  # (monotonic) when the query behind this state was about to be sent


def clean(text: str) -> str:
    # Stored text must not be able to close (or open) the memory block.
    return text.replace(CLOSE_TAG, "</ memgate_memory>").replace(OPEN_TAG, "< memgate_memory>")


def observation_line(o: ObservationItem, tokens: int, cross_thread: bool = False) -> Line:
    """`tokens`: the text's own (stored with it)."""
    source = f" (thread {o.thread_id})" if cross_thread else ""
    framing = f"- {o.observed_on}{source} [{o.priority}]"
    return Line(f"{framing} {clean(o.text)}", line_tokens(framing, tokens))


def message_line(m: StoredMessage) -> MessageLine:
    item = MessageItem(m.id, m.role, m.content, m.created_at.timestamp())
    framing = f"[{m.created_at.astimezone(UTC):%Y-%m-%d %H:%M}] {m.role}:"
    return MessageLine(item, Line(f"{framing} {clean(m.content)}", line_tokens(framing, m.tokens)),
                       (m.created_at, m.id), message_fingerprint(m.role, m.content))


def line_tokens(framing: str, text_tokens: int) -> int:
    """A line's cost in the block: its framing's, its text's and its newline's (the text's
    leading space joins its first word). Close to the line's real count, so a block fitted
    by these costs seldom needs trimming after the real count."""
    return _framing_tokens(framing) + text_tokens + 1


@lru_cache(maxsize=4096)  # framings repeat: one per minute and role, per date and priority
def _framing_tokens(framing: str) -> int:
    return count_tokens(framing)


class ThreadViews:
    def __init__(self, stores: Stores, *, capacity: int = CACHE_THREADS) -> None:
        self.stores = stores
        self.capacity = capacity
        self._views: OrderedDict[tuple[str, str], ThreadView] = OrderedDict()
        # Lookups run concurrently: one thread's view is refreshed by one of them at a time.
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self.hits = self.appends = self.loads = self.reused = 0

    async def get(self, tenant: str, thread_id: str, resource_id: str) -> ThreadView | None:
        key = (tenant, thread_id)
        arrived = time.monotonic()
        if len(self._locks) > 2 * self.capacity:
            self._locks = {k: lock for k, lock in self._locks.items() if lock.locked()}
        async with self._locks.setdefault(key, asyncio.Lock()):
            view = self._views.get(key)
            if view is not None and view.read_at > arrived:
                self.reused += 1
                self._views.move_to_end(key)
                return view
            return await self._get(key, tenant, thread_id, resource_id)

    async def _get(self, key: tuple[str, str], tenant: str, thread_id: str, resource_id: str) -> ThreadView | None:
        view = self._views.get(key)
        read_at = time.monotonic()
        if view is not None:  # the usual case: the counters and any new messages, one round trip
            versions, fresh, unseen = await self.stores.threads.changes(tenant, thread_id, resource_id, view.unseen)
        else:
            (versions, unseen), fresh = await self.stores.threads.versions(tenant, thread_id, resource_id), []
        if versions is None:
            self._views.pop(key, None)
            return None
        if (view is not None and view.created_at == versions.created_at
                and view.observations_version == versions.observations_version):
            new = [m for m in fresh if m.id not in view.ids]  # (a load may have read some already)
            if new:
                self._append_lines(view, [message_line(m) for m in new])
                self.appends += 1
            else:
                self.hits += 1
            view.unseen = unseen
            view.related = versions.related
            view.read_at = read_at
            if key in self._views:  # (unless forgotten meanwhile)
                self._views.move_to_end(key)
            return view
        view = await self._load(tenant, thread_id, versions, unseen)
        view.related = versions.related
        view.read_at = read_at
        self._views[key] = view
        self._views.move_to_end(key)
        if len(self._views) > self.capacity:
            self._views.popitem(last=False)
        self.loads += 1
        return view

    async def _load(self, tenant: str, thread_id: str, versions: ThreadVersions, unseen: Unseen) -> ThreadView:
        """`unseen`: of the read that found `versions`, before these: what commits after it
        comes as deltas (some of it maybe twice, and skipped by id)."""
        observations = await self.stores.observations.for_thread(tenant, thread_id, active_only=True)
        messages = await self.stores.threads.messages(tenant, thread_id, limit=RECENT_MESSAGE_LIMIT, uncovered_only=True)
        lines = []
        for o in observations:
            when = o.observed_on.isoformat() + (f" {o.observed_time:%H:%M}" if o.observed_time else "")
            item = ObservationItem(o.id, o.thread_id, o.text, o.priority, when)
            lines.append(ObservationLine(item, observation_line(item, o.tokens)))
        message_lines = [message_line(m) for m in messages]
        return ThreadView(versions.created_at, versions.observations_version, False, lines, message_lines,
                          unseen=unseen, ids={m.id for m in messages},
                          observation_tokens=sum(o.line.tokens for o in lines),
                          message_tokens=sum(m.line.tokens for m in message_lines))

    @staticmethod
    def _append_lines(view: ThreadView, lines: list[MessageLine]) -> None:
        if not lines:
            return
        in_order = not view.messages or min(line.key for line in lines) > view.messages[-1].key
        view.messages.extend(lines)
        view.ids.update(line.item.id for line in lines)
        view.message_tokens += sum(line.line.tokens for line in lines)
        if not in_order:  # a late write belongs before newer ones
            view.messages.sort(key=lambda m: m.key)
        if len(view.messages) > RECENT_MESSAGE_LIMIT:
            dropped = len(view.messages) - RECENT_MESSAGE_LIMIT
            view.ids.difference_update(m.item.id for m in view.messages[:dropped])
            view.message_tokens -= sum(m.line.tokens for m in view.messages[:dropped])
            del view.messages[:dropped]
