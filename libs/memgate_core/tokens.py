"""Token counting with a real BPE tokenizer that ships in a package (no download)."""

from __future__ import annotations

from functools import lru_cache

import bpe_openai


@lru_cache(maxsize=1)
def _encoding() -> "bpe_openai.Encoding":
    # o200k_base is the encoding of current OpenAI models; bpe-openai ships it.
    return bpe_openai.get_encoding("o200k_base")


def count_tokens(text: str) -> int:
    if not text:
        return 0
    return len(_encoding().encode(text))
