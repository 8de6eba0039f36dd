"""The memory eval on the shipped dataset: cross-thread evidence recall must not regress.

One fresh `memgate up` (local observer, 2,000-token budget) and an in-process fake provider;
the harness (memgate_testing.eval) replays bench/memory/data/small.json, asks each question
in a new thread of its user and checks the injected block for the question's evidence.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from memgate_testing.eval import (
    BudgetResult,
    Evaluator,
    load_dataset,
    message_injected,
    observation_injected,
)
from memgate_testing.fake_provider import FakeProvider
from memgate_testing.gateway import GatewayProcess

DATASET = Path(__file__).resolve().parents[2] / "bench" / "memory" / "data" / "small.json"
BUDGET = 2000
# Measured 25/26 (96%) with the local observer; a broken provenance link, block format,
# observer or cross-thread search drops it far below this.
MIN_EVIDENCE_RECALL = 0.85


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BudgetResult]:
    dataset = load_dataset(DATASET)
    data_dir = tmp_path_factory.mktemp("memory-eval") / "data"
    with FakeProvider() as fake:
        gateway = GatewayProcess(data_dir, provider_url=fake.base_url, env={
            "MEMGATE_CONTEXT_BUDGET_TOKENS": str(BUDGET), "MEMGATE_OBSERVER_MODEL": "local",
        })
        with gateway:
            evaluator = Evaluator(gateway.base_url, gateway.api_key, fake, observer_timeout_s=20)
            try:
                yield evaluator.run(dataset, BUDGET)
            finally:
                evaluator.close()


def test_evidence_recall_at_2000_tokens(result: BudgetResult) -> None:
    summary = result.summary()
    missed = [(q.id, q.question, q.evidence) for q in result.questions if not q.recalled]
    assert result.observer_settled, "the observer did not finish the replayed sessions"
    assert summary["observer_coverage"] >= MIN_EVIDENCE_RECALL, f"evidence not observed: {missed}"
    assert summary["evidence_recall"] >= MIN_EVIDENCE_RECALL, (
        f"evidence recall {summary['evidence_recall']:.0%} < {MIN_EVIDENCE_RECALL:.0%}; missed: {missed}"
    )


def test_injected_tokens_and_latency_are_reported(result: BudgetResult) -> None:
    summary = result.summary()
    assert summary["memory_states"] == {"injected": len(result.questions)}
    assert all(0 < q.tokens <= BUDGET for q in result.questions)
    assert summary["lookup_ms_p50"] > 0
    assert summary["lookup_ms_p99"] >= summary["lookup_ms_p50"]


def test_scoring_reads_the_block_line_format() -> None:
    block = "\n".join([
        "<memgate_memory>",
        "## Observations from this conversation",
        "- 2024-06-30 [high] User stated: I live in Porto.",
        "## Relevant observations from this user's other conversations",
        "- 2024-06-30 (thread eval.m4) [high] User stated: I moved to Porto.",
        "## Recent messages of this conversation (oldest first)",
        "[2024-06-30 10:00] user: Biscuit loves the new flat.",
        "</memgate_memory>",
    ])
    assert observation_injected(block, "User stated: I moved to Porto.", "eval.m4")
    assert not observation_injected(block, "User stated: I moved to Porto.", "eval.m1")  # another thread's line
    assert not observation_injected(block, "I moved to Porto.", "eval.m4")  # only part of a line
    assert observation_injected(block, "User stated: I live in Porto.", "eval.m2")  # the thread's own section
    assert message_injected(block, "user", "Biscuit loves the new flat.")
    assert not message_injected(block, "assistant", "Biscuit loves the new flat.")
    assert not message_injected(block, "user", "User stated: I live in Porto.")
