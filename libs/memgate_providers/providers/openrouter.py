"""OpenRouter: many models behind one OpenAI-compatible API (`openrouter/<vendor>/<model>`).

OpenRouter's app-attribution headers are optional and off by default (a self-hosted
gateway should not announce itself): set OPENROUTER_SITE_URL (sent as `HTTP-Referer`)
and/or OPENROUTER_APP_TITLE (sent as `X-OpenRouter-Title` and the older `X-Title`), or
put them under `headers` in the config file.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from memgate_providers.base import ProviderSpec
from memgate_providers.openai_compatible import OpenAICompatibleProvider

SPEC = ProviderSpec(
    "openrouter", "https://openrouter.ai/api/v1", key_env="OPENROUTER_API_KEY",
    models=("openai/gpt-4o-mini", "anthropic/claude-sonnet-4.5", "google/gemini-2.5-flash"),
)


def build(spec: ProviderSpec, env: Mapping[str, str]) -> OpenAICompatibleProvider:
    attribution: dict[str, str] = {}
    if site := env.get("OPENROUTER_SITE_URL"):
        attribution["http-referer"] = site
    if title := env.get("OPENROUTER_APP_TITLE"):
        attribution["x-openrouter-title"] = attribution["x-title"] = title
    if attribution:
        spec = msgspec.structs.replace(spec, headers={**spec.headers, **attribution})
    return OpenAICompatibleProvider(spec)
