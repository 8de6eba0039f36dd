"""What a request cost, in US dollars, from the price tables of the maintained `genai-prices`
package (they ship with it: nothing is fetched at run time).

A price is looked up once per (provider, model) and kept (a lookup costs about 90 µs).
A flat price per token is then one multiplication; tiered prices (Gemini and Claude charge
more past 200k input tokens) go through the package's own `calc_price` (about 60 µs).
Providers or models the tables do not know (local servers, custom providers, new models)
have no price: None, not 0.
"""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache

from genai_prices import Usage, calc_price
from genai_prices.types import ModelPrice

# memgate's provider names -> the tables' provider ids (where they differ, or exist at all)
PROVIDER_IDS = {"openai": "openai", "anthropic": "anthropic", "google": "google", "groq": "groq",
                "mistral": "mistral", "deepseek": "deepseek", "xai": "x-ai", "together": "together",
                "fireworks": "fireworks", "openrouter": "openrouter"}


def cost_usd(provider: str, model: str, input_tokens: int, output_tokens: int) -> float | None:
    """The price of `input_tokens` in and `output_tokens` out on the provider's `model`."""
    price = _price(provider, model)
    if price is None:
        return None
    if isinstance(price, tuple):
        return input_tokens * price[0] + output_tokens * price[1]
    return float(price.calc_price(Usage(input_tokens=input_tokens, output_tokens=output_tokens))["total_price"])


@lru_cache(maxsize=4096)
def _price(provider: str, model: str) -> tuple[float, float] | ModelPrice | None:
    """Flat prices as dollars per input and output token; anything else as the package has it."""
    provider_id = PROVIDER_IDS.get(provider)
    if provider_id is None or not model:
        return None
    try:
        price = calc_price(Usage(input_tokens=0, output_tokens=0), model_ref=model, provider_id=provider_id).model_price
    except LookupError:
        return None
    per_input, per_output = price.input_mtok or Decimal(0), price.output_mtok or Decimal(0)
    if isinstance(per_input, Decimal) and isinstance(per_output, Decimal):
        return float(per_input) / 1e6, float(per_output) / 1e6
    return price
