"""Anthropic (Claude), through Anthropic's OpenAI-compatible endpoint.

Why not the Messages API: the compatibility endpoint accepts the Chat Completions body
memgate already has, so streaming, tools and images go through with zero translation on
the hot path (one less place for chunks to be re-encoded or features to be lost). If a
feature only the Messages API offers is needed (prompt caching controls, citations, PDF
input...), a translating provider can be added later as its own module.

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
    def models_request(self, *, api_key: str | None) -> Request:
        request = super().models_request(api_key=api_key)
        key = api_key or self.spec.api_key
        extra = {"x-api-key": key} if key else {}
        return Request(request.method, request.url, {**request.headers, **extra, "anthropic-version": API_VERSION})


def build(spec: ProviderSpec, env: Mapping[str, str]) -> AnthropicProvider:
    return AnthropicProvider(spec)
