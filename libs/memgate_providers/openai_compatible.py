"""Providers that speak the OpenAI Chat Completions API (most of them, natively or via a
compatibility endpoint). A provider that needs translation gets its own module."""

from __future__ import annotations

import httpx

from memgate_providers.base import ProviderSpec


class OpenAICompatibleProvider:
    def __init__(self, spec: ProviderSpec) -> None:
        self.spec = spec
        self._url = spec.base_url.rstrip("/") + "/chat/completions"

    def build_request(self, client: httpx.AsyncClient, body: bytes, *, api_key: str | None) -> httpx.Request:
        headers = {"content-type": "application/json"}
        key = api_key or self.spec.api_key
        if key:
            headers["authorization"] = f"Bearer {key}"
        return client.build_request("POST", self._url, content=body, headers=headers)
