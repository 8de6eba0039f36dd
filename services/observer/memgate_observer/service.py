"""The observer service: the consumer loop around the exchange handler."""

from __future__ import annotations

from memgate_bus import Bus
from memgate_core.config import Settings
from memgate_observer.choose import choose_observer
from memgate_observer.consumer import ExchangeConsumer
from memgate_observer.handler import ExchangeHandler
from memgate_providers import ProviderClient
from memgate_store import Stores
from memgate_vectors import Embedder, VectorIndex


class ObserverService:
    def __init__(
        self, settings: Settings, bus: Bus, stores: Stores, index: VectorIndex, embedder: Embedder,
        providers: ProviderClient,
    ) -> None:
        observer, self.notice = choose_observer(settings.observer_model, providers)
        self.observer_name = observer.name
        self.handler = ExchangeHandler(
            stores, index, embedder, observer,
            activation_tokens=settings.activation_tokens, keep_raw_tokens=settings.keep_raw_tokens,
        )
        self.consumer = ExchangeConsumer(bus, self.handler)

    async def start(self) -> None:
        await self.consumer.start()

    async def stop(self) -> None:
        await self.consumer.stop()
