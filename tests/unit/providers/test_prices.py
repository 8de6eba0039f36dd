"""Request prices from the shipped price tables, against hand computations."""

from __future__ import annotations

import pytest

from memgate_providers.prices import cost_usd


@pytest.mark.parametrize(("provider", "model", "tokens_in", "tokens_out", "dollars"), [
    ("openai", "gpt-4o-mini", 1000, 500, 1000 * 0.15 / 1e6 + 500 * 0.60 / 1e6),  # $0.15 in, $0.60 out per M
    ("openai", "gpt-4o-mini", 0, 0, 0.0),
    ("anthropic", "claude-sonnet-4-5", 100_000, 2_000, 100_000 * 3 / 1e6 + 2_000 * 15 / 1e6),  # (tiered: below 200k)
    ("google", "gemini-2.5-flash", 1000, 500, 1000 * 0.30 / 1e6 + 500 * 2.50 / 1e6),
])
def test_prices_match_a_hand_computation(provider: str, model: str, tokens_in: int, tokens_out: int,
                                          dollars: float) -> None:
    assert cost_usd(provider, model, tokens_in, tokens_out) == pytest.approx(dollars, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize(("provider", "model"), [("fake", "x"), ("openai", "no-such-model"), ("ollama", "llama3"),
                                                 ("openai", "")])
def test_what_the_tables_do_not_know_has_no_price(provider: str, model: str) -> None:
    assert cost_usd(provider, model, 10, 10) is None
