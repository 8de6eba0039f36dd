"""Handling one `ExchangeCompleted`: persist → observe → embed → index → commit.

Idempotent under redelivery: messages and observations have deterministic ids, vectors
are upserted by id, and `observed_exchanges` marks an exchange done in the same
transaction as its observations. Vectors go in before that commit, so a crash between
the two only means the next delivery writes the same points again.
"""

from __future__ import annotations

import logging

from opentelemetry import trace

from memgate_core.events import ExchangeCompleted
from memgate_core.ids import stable_uuid
from memgate_core.tokens import count_tokens
from memgate_observer.base import Observer
from memgate_observer.prompt import MalformedObserverOutput
from memgate_store import Observation, Stores
from memgate_telemetry.metrics import EXCHANGES_OBSERVED, OBSERVATIONS_WRITTEN
from memgate_vectors import Embedder, VectorIndex, VectorPoint

log = logging.getLogger("memgate.observer")
tracer = trace.get_tracer("memgate.observer")


class ExchangeHandler:
    def __init__(
        self, stores: Stores, index: VectorIndex, embedder: Embedder, observer: Observer,
        *, activation_tokens: int, keep_raw_tokens: int,
    ) -> None:
        self.stores = stores
        self.index = index
        self.embedder = embedder
        self.observer = observer
        self.activation_tokens = activation_tokens
        self.keep_raw_tokens = keep_raw_tokens

    async def handle(self, event: ExchangeCompleted) -> str:
        """Returns what happened: 'observed', 'duplicate' or 'failed'."""
        with tracer.start_as_current_span("observer.handle") as span:
            span.set_attribute("memgate.exchange_id", event.exchange_id)
            span.set_attribute("memgate.thread_id", event.thread_id)
            if await self.stores.observations.already_observed(event.tenant, event.exchange_id):
                EXCHANGES_OBSERVED.labels("duplicate").inc()
                return "duplicate"
            # The edge normally wrote these already; the event is the durable fallback.
            await self.stores.threads.add_messages(
                event.tenant, event.thread_id, event.resource_id, event.exchange_id, event.messages,
                interrupted=event.interrupted,
            )

            observer_name = self.observer.name
            try:
                with tracer.start_as_current_span("observer.observe"):
                    drafts = await self.observer.observe(event)
            except MalformedObserverOutput:
                drafts, observer_name = [], f"{self.observer.name}:failed"
            observations = [
                Observation(
                    id=stable_uuid(event.tenant, event.exchange_id, str(i)),
                    tenant=event.tenant, thread_id=event.thread_id, resource_id=event.resource_id,
                    exchange_id=event.exchange_id, text=d.text, priority=d.priority, observed_on=d.observed_on,
                    tokens=count_tokens(d.text), source_message_ids=d.source_message_ids,
                )
                for i, d in enumerate(drafts)
            ]
            if observations:
                with tracer.start_as_current_span("observer.index"):
                    vectors = await self.embedder.embed_async([o.text for o in observations])
                    await self.index.upsert([
                        VectorPoint(id=o.id, vector=v, payload={
                            "tenant": o.tenant, "resource_id": o.resource_id, "thread_id": o.thread_id,
                            "observation_id": o.id, "text": o.text, "priority": o.priority,
                            "observed_on": o.observed_on.isoformat(),
                        })
                        for o, v in zip(observations, vectors)
                    ])
            async with self.stores.db.pool.acquire() as conn, conn.transaction():
                fresh = await self.stores.observations.record(
                    conn, event.tenant, event.thread_id, event.exchange_id, observer_name, observations
                )
                if fresh:
                    await self.stores.observations.activate(
                        conn, event.tenant, event.thread_id,
                        threshold=self.activation_tokens, keep_raw=self.keep_raw_tokens,
                    )
            outcome = "observed" if fresh else "duplicate"
            if observer_name.endswith(":failed"):
                outcome = "failed"
            EXCHANGES_OBSERVED.labels(outcome).inc()
            if fresh:
                OBSERVATIONS_WRITTEN.inc(len(observations))
            span.set_attribute("memgate.observations", len(observations))
            return outcome
