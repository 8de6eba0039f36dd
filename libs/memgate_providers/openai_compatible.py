"""Providers that speak the OpenAI Chat Completions API (most of them, natively or via a
compatibility endpoint). A provider that needs more gets a subclass in its own module."""

from __future__ import annotations

from typing import Any

from memgate_providers.base import ProviderSpec
from memgate_providers.http import Request


class OpenAICompatibleProvider:
    def __init__(self, spec: ProviderSpec) -> None:
        self.spec = spec
        self._base = spec.base_url.rstrip("/")
        self._url = self._base + "/chat/completions"

    def headers(self, api_key: str | None) -> dict[str, str]:
        """The spec's extra headers plus `authorization` when a key is known."""
        headers = {name.lower(): value for name, value in self.spec.headers.items()}
        key = api_key or self.spec.api_key
        if key:
            headers["authorization"] = f"Bearer {key}"
        return headers

    def build_request(self, body: bytes, *, api_key: str | None) -> Request:
        return Request("POST", self._url, {"content-type": "application/json", **self.headers(api_key)}, body)

    def messages_request(self, body: bytes, *, api_key: str | None) -> Request | None:
        return None  # /v1/messages reaches these translated to chat completions

    def embeddings_request(self, body: bytes, *, api_key: str | None) -> Request:
        headers = {"content-type": "application/json", **self.headers(api_key)}
        return Request("POST", self._base + "/embeddings", headers, body)

    def models_request(self, *, api_key: str | None) -> Request:
        return Request("GET", self._base + "/models", self.headers(api_key))

    def model_ids(self, data: Any) -> list[str]:
        items = data.get("data") if isinstance(data, dict) else None
        if not isinstance(items, list):
            return []
        return [item["id"] for item in items if isinstance(item, dict) and isinstance(item.get("id"), str)]
