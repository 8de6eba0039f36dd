"""A fake LLM provider: a real HTTP server for tests and benchmarks.

It speaks OpenAI Chat Completions (`POST /v1/chat/completions`, plus models and embeddings)
and the Anthropic Messages API (`POST /v1/messages`); both answer with the same reply logic.

`FakeProvider` serves it from a background thread; `FakeProviderProcess` runs
`python -m memgate_testing.fake_provider` and drives it through the control API.
"""

from memgate_testing.fake_provider._app import FakeProviderApp
from memgate_testing.fake_provider._cli import main
from memgate_testing.fake_provider._replies import Responder
from memgate_testing.fake_provider._server import FakeProvider
from memgate_testing.fake_provider._state import Behavior, FakeState

__all__ = [
    "Behavior",
    "FakeProvider",
    "FakeProviderApp",
    "FakeProviderProcess",
    "FakeState",
    "Responder",
    "main",
]


def __getattr__(name: str) -> object:
    # Imported lazily so the subprocess server does not pay for httpx at start-up.
    if name == "FakeProviderProcess":
        from memgate_testing.fake_provider._process import FakeProviderProcess

        return FakeProviderProcess
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
