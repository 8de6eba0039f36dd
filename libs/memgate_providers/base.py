"""The one interface every provider sits behind, and the description of a provider."""

from __future__ import annotations

from typing import Any, Protocol

import msgspec

from memgate_providers.http import Request


class ProviderSpec(msgspec.Struct, frozen=True):
    """Where a provider lives and how to authenticate to it."""

    name: str
    base_url: str
    api_key: str | None = None
    key_env: str | None = None  # the conventional variable, for messages that help users
    models: tuple[str, ...] = ()  # well-known models, listed by GET /v1/models
    alt_key_envs: tuple[str, ...] = ()  # read after `key_env` (Google: GOOGLE_API_KEY)
    aliases: tuple[str, ...] = ()  # other names of the provider prefix (gemini -> google)
    headers: dict[str, str] = {}  # sent with every request (attribution, workspace ids...)

    @property
    def configured(self) -> bool:
        """A key is set, or the provider needs none (local servers, keyless custom ones)."""
        return bool(self.api_key) or self.key_env is None


class Provider(Protocol):
    spec: ProviderSpec

    def build_request(self, body: bytes, *, api_key: str | None) -> Request:
        """The HTTP request for one chat completion; `body` already names the upstream model."""
        ...

    def messages_request(self, body: bytes, *, api_key: str | None) -> Request | None:
        """The HTTP request for Anthropic's Messages API when the provider speaks it natively
        (`body` names the upstream model); None when it does not (memgate then translates)."""
        ...

    def embeddings_request(self, body: bytes, *, api_key: str | None) -> Request:
        """The HTTP request for embeddings (OpenAI format); `body` names the upstream model."""
        ...

    def models_request(self, *, api_key: str | None) -> Request:
        """The HTTP request that lists the provider's models."""
        ...

    def model_ids(self, data: Any) -> list[str]:
        """The model ids in the decoded answer to `models_request` (without memgate's prefix)."""
        ...
