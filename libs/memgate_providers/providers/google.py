"""Google Gemini, through Gemini's OpenAI-compatible endpoint.

The key is read from GEMINI_API_KEY, then GOOGLE_API_KEY. The prefix `gemini/` is accepted
as another name for `google/`. Gemini lists its models as `models/<id>`; the prefix is
removed so that listed ids can be used as they are.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from memgate_providers.base import ProviderSpec
from memgate_providers.openai_compatible import OpenAICompatibleProvider

SPEC = ProviderSpec(
    "google", "https://generativelanguage.googleapis.com/v1beta/openai",
    key_env="GEMINI_API_KEY", alt_key_envs=("GOOGLE_API_KEY",), aliases=("gemini",),
    models=("gemini-2.5-flash", "gemini-2.5-pro", "gemini-2.5-flash-lite"),
)


class GoogleProvider(OpenAICompatibleProvider):
    def model_ids(self, data: Any) -> list[str]:
        return [i.removeprefix("models/") for i in super().model_ids(data)]


def build(spec: ProviderSpec, env: Mapping[str, str]) -> GoogleProvider:
    return GoogleProvider(spec)
