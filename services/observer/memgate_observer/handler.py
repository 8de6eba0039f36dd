"""Handling one thread's recorded exchanges: read → observe → embed → index → commit; then reflect.

The events name exchanges the edge has stored; their messages are read back from Postgres
(an exchange whose thread was deleted meanwhile has none left, and is skipped).

Both the exchanges' messages and the observations made of them are indexed
(`memgate_observer.indexing`), so everything remembered can be recalled.

Idempotent under redelivery: messages have their own ids, observation ids are derived
from the batch's exchange ids, vectors are upserted by id, and `observed_exchanges`
marks every exchange of the batch done in the transaction that writes its observations
(all or nothing). The caller acks the deliveries only after `handle_batch` returns.

Writes to one thread's memory (observations + vectors) hold a Postgres advisory lock on
the thread, so observer replicas and the Reflector never interleave on it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from opentelemetry import trace

from memgate_core.events import ExchangeCompleted, ExchangeRecorded
from memgate_core.ids import stable_uuid
from memgate_core.tokens import count_tokens
from memgate_observer.base import ObservationDraft, Observer, ObserverFailed, ObserverInput, Reflector
from memgate_observer.indexing import IndexedMessages, MessageIndexer, observation_point
from memgate_observer.reflector import LocalReflector, reflect_safely
from memgate_store import Observation, Stores
from memgate_store.observations import MemoryLimits, text_key
from memgate_telemetry.metrics import EXCHANGES_OBSERVED, OBSERVATIONS_WRITTEN
from memgate_vectors import TextEmbedder, VectorIndex, VectorPoint

log = logging.getLogger("memgate.observer")
tracer = trace.get_tracer("memgate.observer")

PROMPT_RECENT_OBSERVATIONS = 200  # newest current observations handed to the Observer
REFLECTION_RETRY_AFTER = timedelta(minutes=10)  # a failed reflection of unchanged memory is not retried sooner


class ConcurrentlyObserved(RuntimeError):
    """Another delivery recorded part of this batch first: redeliver, the rest will be observed then."""


class BatchResult(msgspec.Struct, frozen=True):
    outcome: str  # 'observed' | 'duplicate' | 'failed' | 'deleted' (the thread is gone)
    exchanges: int = 0  # newly observed (or failed) in this batch
    observations: int = 0
    covered_messages: int = 0


class ExchangeHandler:
    def __init__(
        self, stores: Stores, index: VectorIndex, embedder: TextEmbedder, observer: Observer,
        reflector: Reflector | None = None, *, activation_tokens: int, keep_raw_tokens: int,
        observation_budget_tokens: int = 40_000,
    ) -> None:
        self.stores = stores
        self.index = index
        self.embedder = embedder
        self.observer = observer
        self.reflector = reflector or LocalReflector()
        self.activation_tokens = activation_tokens
        self.keep_raw_tokens = keep_raw_tokens
        self.observation_budget_tokens = observation_budget_tokens
        self.messages = MessageIndexer(stores.threads, embedder)

    async def limits(self, tenant: str, thread_id: str) -> MemoryLimits:
        return await self.stores.observations.limits(
            tenant, thread_id, activation_tokens=self.activation_tokens,
            observation_budget_tokens=self.observation_budget_tokens,
        )

    async def handle(self, event: ExchangeRecorded) -> str:
        """One exchange on its own; returns 'observed', 'duplicate', 'failed' or 'deleted'."""
        return (await self.handle_batch([event])).outcome

    async def handle_batch(self, events: Sequence[ExchangeRecorded]) -> BatchResult:
        """Observe the pending exchanges of one thread together, in one observer call."""
        with tracer.start_as_current_span("observer.handle") as span:
            unique = {e.exchange_id: e for e in events}
            ordered = sorted(unique.values(), key=lambda e: (e.completed_at, e.exchange_id))
            first = ordered[0]
            tenant, thread_id, resource_id = first.tenant, first.thread_id, first.resource_id
            if any((e.tenant, e.thread_id) != (tenant, thread_id) for e in ordered):
                raise ValueError("a batch holds exchanges of one thread")
            span.set_attribute("memgate.thread_id", thread_id)
            span.set_attribute("memgate.exchanges", len(ordered))

            observations = self.stores.observations
            done = await observations.observed(tenant, [e.exchange_id for e in ordered])
            fresh = [e for e in ordered if e.exchange_id not in done]
            if not fresh:
                EXCHANGES_OBSERVED.labels("duplicate").inc(len(ordered))
                return BatchResult("duplicate")
            exchanges = await self._with_messages(fresh)
            if not exchanges:  # their thread was deleted (and maybe re-created) meanwhile
                EXCHANGES_OBSERVED.labels("deleted").inc(len(fresh))
                return BatchResult("deleted")

            with tracer.start_as_current_span("observer.embed_messages"):
                indexed = await self.messages.points(exchanges)
            memory = await observations.thread_memory(tenant, thread_id)
            batch = ObserverInput(
                tenant, thread_id, resource_id, exchanges,
                recent=await observations.recent(tenant, thread_id, limit=PROMPT_RECENT_OBSERVATIONS),
                current_task=memory.current_task if memory else None,
            )
            try:
                with tracer.start_as_current_span("observer.observe"):
                    result = await self.observer.observe(batch)
            except ObserverFailed as failure:
                return await self._record_failure(batch, failure, indexed)  # (its messages stay recallable)

            drafts = await self._new_facts(tenant, thread_id, result.drafts)
            stored = self._observations(batch, drafts)
            vectors = await self.embedder.embed_async([o.text for o in stored]) if stored else []
            limits = await self.limits(tenant, thread_id)
            async with self.stores.db.pool.acquire() as conn, conn.transaction():
                await observations.lock_thread(conn, tenant, thread_id)
                # Messages deleted while this batch was observed: nothing of them is kept.
                alive, message_points = await self._alive_points(conn, batch, indexed)
                if len(alive) < len(batch.messages):
                    stored, vectors = _of_alive(alive, stored, vectors)
                if not await observations.record_batch(conn, tenant, thread_id, batch.exchange_ids,
                                                       self.observer.name, stored):
                    raise ConcurrentlyObserved(f"part of a batch of thread {thread_id} was observed concurrently")
                if result.current_task:
                    await observations.set_current_task(conn, tenant, thread_id, result.current_task)
                # (A threshold below the raw tail kept would never cover anything: a thread's
                # own low threshold keeps at most half of it raw.)
                keep_raw = min(self.keep_raw_tokens, limits.activation_tokens // 2)
                covered = await observations.activate(conn, tenant, thread_id, threshold=limits.activation_tokens,
                                                      keep_raw=keep_raw)
                # Vectors last, just before commit: anything above may still roll back, and
                # `lock_thread` makes a concurrent delete wait (it then removes these vectors
                # after us).
                with tracer.start_as_current_span("observer.index"):
                    await self.index.upsert([*message_points,
                                             *(observation_point(o, v) for o, v in zip(stored, vectors))])
            EXCHANGES_OBSERVED.labels("observed").inc(len(exchanges))
            OBSERVATIONS_WRITTEN.inc(len(stored))
            span.set_attribute("memgate.observations", len(stored))
            if memory is not None and memory.title is None:
                await self._title(batch)
            return BatchResult("observed", len(exchanges), len(stored), covered)

    async def _title(self, batch: ObserverInput) -> None:
        """An untitled thread's first exchange gives it a title (after the commit: the
        observer's model may take a while, and a title is not worth redelivering for)."""
        opening = next((m for m in batch.messages if m.role == "user" and m.content.strip()), None)
        if opening is None or await self.stores.threads.previous_message(
                batch.tenant, batch.thread_id, datetime.fromtimestamp(opening.created_at, UTC)) is not None:
            return  # (not the thread's opening: a title an application cleared stays cleared)
        with tracer.start_as_current_span("observer.title"):
            await self.stores.observations.set_title(batch.tenant, batch.thread_id,
                                                     await self.observer.title(opening.content))

    async def _with_messages(self, events: Sequence[ExchangeRecorded]) -> list[ExchangeCompleted]:
        """The exchanges with their stored messages; those that have none left are dropped."""
        first = events[0]
        stored = await self.stores.threads.exchanges(first.tenant, first.thread_id, [e.exchange_id for e in events])
        return [ExchangeCompleted(e.exchange_id, e.tenant, e.resource_id, e.thread_id, e.model, e.provider,
                                  stored[e.exchange_id], e.started_at, e.completed_at, e.interrupted, e.usage)
                for e in events if stored.get(e.exchange_id)]

    async def _new_facts(self, tenant: str, thread_id: str, drafts: list[ObservationDraft]) -> list[ObservationDraft]:
        """Drop drafts the thread already has, or that repeat one another (same normalised words)."""
        keys = [text_key(d.text) for d in drafts]
        known = await self.stores.observations.known_text_keys(tenant, thread_id, keys) if keys else set()
        kept = []
        for key, draft in zip(keys, drafts):
            if key not in known:
                known.add(key)
                kept.append(draft)
        return kept

    def _observations(self, batch: ObserverInput, drafts: list[ObservationDraft]) -> list[Observation]:
        exchange_of = {m.id: e.exchange_id for e in batch.exchanges for m in e.messages}
        batch_key = "+".join(sorted(batch.exchange_ids))
        return [
            Observation(
                id=stable_uuid(batch.tenant, batch_key, str(i)), tenant=batch.tenant, thread_id=batch.thread_id,
                resource_id=batch.resource_id,
                exchange_id=exchange_of.get(d.source_message_ids[0] if d.source_message_ids else "",
                                            batch.exchange_ids[-1]),
                text=d.text, priority=d.priority, observed_on=d.observed_on, tokens=count_tokens(d.text),
                source_message_ids=d.source_message_ids, observed_time=d.observed_time, observer=self.observer.name,
            )
            for i, d in enumerate(drafts)
        ]

    async def _record_failure(self, batch: ObserverInput, failure: ObserverFailed,
                              indexed: IndexedMessages) -> BatchResult:
        """Unusable output: mark the exchanges done (their messages stay raw, and recallable:
        `indexed`) and show why."""
        log.error("observer failed on thread %s (%d exchanges): %s", batch.thread_id, len(batch.exchanges),
                  failure.error)
        if not await self._mark_failed(batch.tenant, batch.thread_id, batch.exchange_ids, failure.error,
                                       failure.raw_output, batch, indexed):
            raise ConcurrentlyObserved(f"part of a batch of thread {batch.thread_id} was observed concurrently")
        EXCHANGES_OBSERVED.labels("failed").inc(len(batch.exchanges))
        return BatchResult("failed", len(batch.exchanges))

    async def set_aside(self, event: ExchangeRecorded, error: str) -> bool:
        """Give up on an exchange that kept failing: mark it done (failed), so no later batch
        tries it again, and record why (the dashboard shows the thread's failures). False if
        it was observed meanwhile after all."""
        if not await self._mark_failed(event.tenant, event.thread_id, [event.exchange_id], error):
            return False
        EXCHANGES_OBSERVED.labels("set_aside").inc()
        return True

    async def _mark_failed(self, tenant: str, thread_id: str, exchange_ids: list[str], error: str,
                           raw_output: str | None = None, batch: ObserverInput | None = None,
                           indexed: IndexedMessages | None = None) -> bool:
        """Mark the exchanges observed (failed) and record why, in one transaction, with the
        vectors of the `batch`'s messages still there (`indexed`); False if one of the
        exchanges was observed meanwhile (then nothing is written)."""
        observations = self.stores.observations
        async with self.stores.db.pool.acquire() as conn, conn.transaction():
            await observations.lock_thread(conn, tenant, thread_id)
            if not await observations.record_batch(conn, tenant, thread_id, exchange_ids, self.observer.name, [],
                                                   failed=True):
                return False
            await observations.record_failure(conn, tenant, thread_id, kind="observer", observer=self.observer.name,
                                              error=error, raw_output=raw_output, exchange_ids=exchange_ids)
            if batch is not None and indexed is not None:  # (as for an observed batch: last, before commit)
                await self.index.upsert((await self._alive_points(conn, batch, indexed))[1])
        return True

    async def _alive_points(self, conn: Any, batch: ObserverInput,
                            indexed: IndexedMessages) -> tuple[set[str], list[VectorPoint]]:
        """Under the thread's lock: which of the batch's messages are still there, and their
        points. A point holds the text of the message it follows: when one of the batch's
        messages, or the one the batch follows, was deleted meanwhile, they are made again."""
        ids = {m.id for m in batch.messages}
        used = {*ids, *([indexed.follows] if indexed.follows else [])}  # (it may be one of them: a blank one)
        alive = await self.stores.observations.alive_messages(conn, batch.tenant, list(used))
        if len(alive) < len(used):
            indexed = await self.messages.points([msgspec.structs.replace(e, messages=[
                m for m in e.messages if m.id in alive]) for e in batch.exchanges])
        return alive & ids, indexed.points

    # ------------------------------------------------------------------ reflection

    async def reflect_if_needed(self, tenant: str, thread_id: str) -> str | None:
        """Reflect the thread's active observations if they exceed the budget.

        Returns None (not needed), 'skipped' (a reflection of this very memory failed
        recently), 'reflected', 'rejected' (memory unchanged, failure recorded) or 'stale'
        (another reflection got there first).
        """
        observations = self.stores.observations
        state = await observations.reflection_state(tenant, thread_id)
        limits = await self.limits(tenant, thread_id)
        if state is None or state.active_tokens <= limits.observation_budget_tokens:
            return None
        if (state.failed_version == state.observations_version and state.failed_at is not None
                and datetime.now(UTC) - state.failed_at < REFLECTION_RETRY_AFTER):
            return "skipped"
        with tracer.start_as_current_span("observer.reflect") as span:
            span.set_attribute("memgate.thread_id", thread_id)
            inputs = await observations.for_thread(tenant, thread_id, active_only=True)
            outcome = await reflect_safely(self.reflector, inputs, budget=limits.observation_budget_tokens)
            span.set_attribute("memgate.reflection.input_tokens", outcome.input_tokens)
            if outcome.drafts is None:
                log.warning("reflection of thread %s rejected: %s", thread_id, outcome.error)
                await observations.record_failure(
                    None, tenant, thread_id, kind="reflector", observer=self.reflector.name,
                    error=f"reflection rejected after {outcome.attempts} attempts: {outcome.error}",
                    raw_output=outcome.raw_output, observations_version=state.observations_version,
                )
                return "rejected"
            span.set_attribute("memgate.reflection.output_tokens", outcome.output_tokens)
            generation = max(o.generation for o in inputs) + 1
            by_id = {o.id: o for o in inputs}
            # Ids made of what was reflected: a retry makes the same ones, a reflection of
            # these (by another observer, which read the thread's version before they were
            # committed) other ones.
            reflection = stable_uuid(tenant, thread_id, "reflection", *sorted(by_id))
            reflected = [
                Observation(
                    id=stable_uuid(reflection, str(i)),
                    tenant=tenant, thread_id=thread_id, resource_id=inputs[0].resource_id,
                    exchange_id=max((by_id[x] for x in d.derived_from), key=lambda o: o.exchange_id).exchange_id,
                    text=d.text, priority=d.priority, observed_on=d.observed_on, tokens=count_tokens(d.text),
                    source_message_ids=d.source_message_ids, generation=generation, observed_time=d.observed_time,
                    observer=self.reflector.name, derived_from=d.derived_from,
                )
                for i, d in enumerate(outcome.drafts)
            ]
            async with self.stores.db.pool.acquire() as conn, conn.transaction():
                await observations.lock_thread(conn, tenant, thread_id)
                if not await observations.replace_generation(conn, tenant, thread_id, list(by_id), reflected,
                                                              reflector=self.reflector.name):
                    return "stale"
                await self._reindex(list(by_id), await observations.current(tenant, thread_id, conn=conn))
            log.info("reflected thread %s: %d observations (%d tokens) -> %d (%d tokens), generation %d",
                     thread_id, len(inputs), outcome.input_tokens, len(reflected), outcome.output_tokens, generation)
            return "reflected"

    async def _reindex(self, superseded: list[str], current: list[Observation]) -> None:
        """Make the thread's observation vectors exactly its current observations (superseded
        ones leave the index; its messages' points stay)."""
        vectors = await self.embedder.embed_async([o.text for o in current]) if current else []
        await self.index.delete(superseded)
        if current:
            await self.index.upsert([observation_point(o, v) for o, v in zip(current, vectors)])


def _of_alive(alive: set[str], stored: list[Observation],
              vectors: list[list[float]]) -> tuple[list[Observation], list[list[float]]]:
    """The observations with a source message still there, with their vectors."""
    kept = [(o, v) for o, v in zip(stored, vectors, strict=True)
            if not o.source_message_ids or alive & set(o.source_message_ids)]
    return [o for o, _ in kept], [v for _, v in kept]
