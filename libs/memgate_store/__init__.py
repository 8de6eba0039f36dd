"""Postgres access: the pool, migrations, and one repository per domain."""

from __future__ import annotations

from memgate_core.encryption import SecretBox
from memgate_store.database import Database, migrate, unreachable
from memgate_store.keys import KeyRepository
from memgate_store.observations import Observation, ObservationRepository
from memgate_store.outbox import OutboxRepository
from memgate_store.provider_keys import ProviderKeyRepository
from memgate_store.ratelimits import RateLimitRepository
from memgate_store.request_log import RequestLogRepository
from memgate_store.sessions import SessionRepository
from memgate_store.tenant_settings import TenantSettingsRepository
from memgate_store.threads import ThreadRepository
from memgate_store.usage import UsageRecord, UsageReport, UsageRepository


class Stores:
    """Every repository over one pool; services take what they need from it. `secret_box`
    seals secrets at rest, such as tenants' provider keys (without one, saving or reading
    them fails)."""

    def __init__(self, db: Database, *, secret_box: SecretBox | None = None) -> None:
        self.db = db
        self.secret_box = secret_box
        self.keys = KeyRepository(db)
        self.threads = ThreadRepository(db)
        self.outbox = OutboxRepository(db)
        self.observations = ObservationRepository(db)
        self.sessions = SessionRepository(db)
        self.ratelimits = RateLimitRepository(db)
        self.usage = UsageRepository(db)
        self.tenant_settings = TenantSettingsRepository(db)
        self.provider_keys = ProviderKeyRepository(db, secret_box)
        self.request_log = RequestLogRepository(db)

    @classmethod
    async def connect(cls, url: str, *, max_size: int = 10, secret_box: SecretBox | None = None) -> Stores:
        return cls(await Database.connect(url, max_size=max_size), secret_box=secret_box)

    async def close(self) -> None:
        await self.db.close()


__all__ = ["Database", "Observation", "Stores", "UsageRecord", "UsageReport", "migrate", "unreachable"]
