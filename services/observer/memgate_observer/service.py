"""The observer service: the debounced consumer loop around the exchange handler, and the
backlog gauge."""

from __future__ import annotations

from memgate_bus import Bus
from memgate_core.config import Settings
from memgate_observer.backlog import BacklogGauge
from memgate_observer.choose import choose_observer, choose_reflector
from memgate_observer.consumer import ExchangeConsumer
from memgate_observer.handler import ExchangeHandler
from memgate_providers import ProviderClient
from memgate_store import Stores
from memgate_vectors import TextEmbedder, VectorIndex


class ObserverService:
    def __init__(
        self, settings: Settings, bus: Bus, stores: Stores, index: VectorIndex, embedder: TextEmbedder,
        providers: ProviderClient,
    ) -> None:
        observer, self.notice = choose_observer(settings.observer_model, providers)
        # Without its own model the Reflector uses the Observer's; the observer's notice covers both.
        reflector_model = settings.reflector_model or settings.observer_model
        reflector, reflector_notice = choose_reflector(reflector_model, providers)
        if settings.reflector_model and reflector_notice:
            self.notice = f"{self.notice} {reflector_notice}" if self.notice else reflector_notice
        self.observer_name = observer.name
        self.reflector_name = reflector.name
        self.handler = ExchangeHandler(
            stores, index, embedder, observer, reflector,
            activation_tokens=settings.activation_tokens, keep_raw_tokens=settings.keep_raw_tokens,
            observation_budget_tokens=settings.observation_budget_tokens,
        )
        self.consumer = ExchangeConsumer(
            bus, self.handler, debounce=settings.observer_debounce_ms / 1000, max_batch=settings.observer_max_batch,
            concurrency=settings.observer_concurrency,
        )
        self.backlog = BacklogGauge(bus, stores.outbox)

    async def start(self) -> None:
        await self.consumer.start()
        await self.backlog.start()

    async def stop(self) -> None:
        await self.backlog.stop()
        await self.consumer.stop()
