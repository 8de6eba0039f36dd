"""memgate's memory eval: evidence recall of the injected memory block, per token budget.

Replays a conversation dataset through fresh `memgate up` gateways (one per budget, fake
provider, local observer by default), asks each question in a new thread of its user,
and reports how often the injected block holds the question's evidence, with the tokens
injected and the lookup latency. The harness is memgate_testing.eval; docs/eval.md
describes the method and the dataset format.

    .venv/bin/python bench/memory/run.py --dataset bench/memory/data/small.json \
        [--budgets 1000,2000,4000] [--json out.json] [--verbose]
    memgate eval --dataset bench/memory/data/small.json      # the same
"""

from __future__ import annotations

import sys

from memgate_testing.eval import main

if __name__ == "__main__":
    sys.exit(main())
