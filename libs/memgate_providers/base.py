"""The one interface every provider sits behind."""

from __future__ import annotations

from typing import Protocol

import httpx
import msgspec


class ProviderSpec(msgspec.Struct, frozen=True):
    """Where a provider lives and how to authenticate to it."""

    name: str
    base_url: str
    api_key: str | None = None
    key_env: str | None = None  # the conventional variable, for messages that help users
    models: tuple[str, ...] = ()  # well-known models, listed by GET /v1/models

    @property
    def configured(self) -> bool:
        return bool(self.api_key) or self.key_env is None


class Provider(Protocol):
    spec: ProviderSpec

    def build_request(self, client: httpx.AsyncClient, body: bytes, *, api_key: str | None) -> httpx.Request:
        """The HTTP request for one chat completion; `body` already names the upstream model."""
        ...
