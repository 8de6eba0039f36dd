"""Anthropic (Claude): chat completions through Anthropic's OpenAI-compatible endpoint,
and memgate's `/v1/messages` natively through the Messages API.

Each API goes to the endpoint that speaks it, so neither is translated: a chat completion
keeps its OpenAI body (streaming, tools and images included), and a Messages request keeps
what only the Messages API has (prompt caching controls, citations, PDF input, thinking).

The prefix `claude/` is accepted as another name for `anthropic/`. Listing models uses
Anthropic's own `GET /v1/models`, which wants `x-api-key` and `anthropic-version`.
"""

from __future__ import annotations

from collections.abc import Mapping

from memgate_providers.base import ProviderSpec
from memgate_providers.http import Request
from memgate_providers.openai_compatible import OpenAICompatibleProvider

SPEC = ProviderSpec(
    "anthropic", "https://api.anthropic.com/v1", key_env="ANTHROPIC_API_KEY", aliases=("claude",),
    models=("claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-1"),
)

API_VERSION = "2023-06-01"


class AnthropicProvider(OpenAICompatibleProvider):
    def messages_request(self, body: bytes, *, api_key: str | None) -> Request:
        return Request("POST", self._base + "/messages", self._anthropic_headers(api_key, json=True), body)

    def models_request(self, *, api_key: str | None) -> Request:
        return Request("GET", self._base + "/models", self._anthropic_headers(api_key))

    def _anthropic_headers(self, api_key: str | None, *, json: bool = False) -> dict[str, str]:
        """Anthropic's own API wants `x-api-key` and `anthropic-version` (not a bearer token)."""
        headers = {name.lower(): value for name, value in self.spec.headers.items()}
        key = api_key or self.spec.api_key
        if key:
            headers["x-api-key"] = key
        headers["anthropic-version"] = API_VERSION
        if json:
            headers["content-type"] = "application/json"
        return headers


def build(spec: ProviderSpec, env: Mapping[str, str]) -> AnthropicProvider:
    return AnthropicProvider(spec)
