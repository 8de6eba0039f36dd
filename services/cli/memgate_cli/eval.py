"""`memgate eval`: the memory eval (evidence recall per token budget), see docs/eval.md.

The harness is memgate_testing.eval, shared with bench/memory/run.py; it starts its own
gateways (one `memgate up` per budget, on temporary data dirs) and a fake provider.
"""

from __future__ import annotations

import argparse


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    from memgate_testing.eval import add_arguments

    add_arguments(parser)


def run_eval(args: argparse.Namespace) -> int:
    from memgate_testing.eval import main_with

    return main_with(args)
