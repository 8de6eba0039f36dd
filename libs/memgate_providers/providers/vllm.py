"""A vLLM server on this machine (`vllm serve`, OpenAI-compatible); needs no key unless
started with --api-key (then set MEMGATE_PROVIDER_VLLM_API_KEY)."""

from memgate_providers.base import ProviderSpec

SPEC = ProviderSpec("vllm", "http://127.0.0.1:8000/v1")
