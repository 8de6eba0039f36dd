"""A live `memgate up` through the whole observational-memory cycle: observations activate
(and replace the raw messages they cover in the block), then the Reflector condenses them.

The thresholds are lowered by their settings (30k and 40k tokens would take thousands of
turns); the code path is the production one.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import openai
from helpers import memory_text, observer_idle

from memgate_testing.fake_provider import FakeProvider
from memgate_testing.gateway import GatewayProcess

# One subject, many facts: what the Reflector can condense (facts about unrelated things it keeps).
FACTS = ["My dog is called Rex.", *(f"My dog Rex {fact}." for fact in (
    "is a beagle", "likes carrots", "sleeps on the sofa", "was born in Oslo", "hates the vacuum cleaner",
    "swims in the lake", "chews my shoes", "barks at the postman", "loves the snow", "is afraid of cats",
    "eats twice a day", "walks five kilometres", "has a red collar", "visits the vet in May", "plays with a ball",
    "waits at the door", "knows ten tricks", "rides in the car", "digs in the garden", "is eight years old",
))]


def test_observations_activate_and_are_reflected(make_gateway: Callable[..., GatewayProcess],
                                                 provider: FakeProvider) -> None:
    gateway = make_gateway(env={"MEMGATE_OBSERVER_MODEL": "local", "MEMGATE_OBSERVER_DEBOUNCE_MS": "100",
                                "MEMGATE_ACTIVATION_TOKENS": "300", "MEMGATE_KEEP_RAW_TOKENS": "100",
                                "MEMGATE_OBSERVATION_BUDGET_TOKENS": "60"}).start()
    client = openai.OpenAI(base_url=gateway.base_url, api_key=gateway.api_key, max_retries=0)
    memory = {"x-thread-id": "cycle", "x-resource-id": "cycle-user"}
    for fact in FACTS:
        client.chat.completions.create(model="fake/m", extra_headers=memory,
                                       messages=[{"role": "user", "content": fact}])
        observer_idle(gateway)  # (one batch per turn: activation and reflection run as they would over days)

    found = httpx.get(f"{gateway.base_url}/memory/threads/cycle/observations", headers=gateway.headers()).json()
    observations = found["data"]
    active = [o for o in observations if o["active"]]
    assert active, "no observation activated"
    assert max(o["generation"] for o in observations) >= 1, "the Reflector never condensed the memory"
    superseded = [o for o in observations if o["superseded_at"] is not None]
    assert superseded and all(o["generation"] == 0 for o in superseded)

    raw = client.chat.completions.with_raw_response.create(
        model="fake/m", extra_headers=memory, messages=[{"role": "user", "content": "What breed is Rex?"}])
    block = memory_text(provider.requests[-1])
    assert int(raw.headers["x-memory-observations"]) >= 1
    # Covered messages left the raw tail: the oldest facts are there only as observations.
    raw_tail = [line for line in block.splitlines() if line.startswith("[")]
    assert not any("My dog Rex is a beagle." in line for line in raw_tail)
    assert "beagle" in block
