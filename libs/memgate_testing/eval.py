"""Memory eval: does the memory block memgate injects hold the evidence a question needs?

The harness replays a conversation dataset through a running gateway, then asks each
question in a *new* thread of the same resource and checks the memory block the gateway
injected into that request. Because the question thread is new, whatever it recalls comes
from the resource's other threads (cross-thread recall: hybrid vector search over their
observations). Only the public HTTP API and the block's line format are used.

Dataset (JSON; see docs/eval.md)::

    {"name": "small",
     "resources": [{
        "resource_id": "user-maya",
        "sessions": [{"session_id": "m1", "date": "2024-01-09",
                      "turns": [{"id": "m1-t1", "role": "user", "content": "..."},
                                {"id": "m1-t2", "role": "assistant", "content": "..."}]}],
        "questions": [{"id": "maya-q1", "question": "...", "answer": "Porto",
                       "evidence": ["m4-t1"]}]}]}

Turn ids are unique within a resource; `evidence` names the turns that hold the answer.
Resource, session and question ids must be valid memgate ids (1-128 characters from
`A-Z a-z 0-9 . _ : @ -`). Within a session, one or more user turns are followed by one
assistant turn (a session may end with user turns). `date` is kept in the report: the
gateway stamps messages with the time they arrive, so it is not sent.

Method, per gateway (one per budget):

1. Replay: each session is a thread `eval.<session_id>` of its resource. Consecutive user
   turns go out as one chat request holding only those messages (memgate supplies the
   past); the fake provider is told to answer with the dataset's assistant turn, so the
   stored exchange is the dataset's. Then the thread's messages are read back
   (GET /v1/memory/threads/{id}/messages) and dataset turns are mapped to memgate's message
   ids exchange by exchange, in order, checked by role and text.
2. Wait for the observer: poll each session thread's observations until the newest
   exchange of every thread has observations, or the counts stop changing.
3. Ask: each question goes to a new thread `eval.q.<question_id>` of the resource. The
   injected block is the first system message of the request the fake provider received
   (it starts with `<memgate_memory>`); `x-memory-tokens` and `x-memory-lookup-ms` are
   read from the response.
4. Score: an evidence message is *covered* when an injected observation has it in its
   `source_message_ids` (observation lines `- <date> (thread <id>) [<priority>] <text>`
   are matched by text to the records of GET /v1/memory/threads/{id}/observations), or when
   its text appears in the block as a raw message line (`[<when>] <role>: <text>`).
   Evidence recall is the share of questions whose evidence messages are all covered.

Optionally (`--answer-model`), each question is also sent with the captured block to a
real model through the gateway (memory off, so the model sees exactly that block) and the
answer is graded, by string match or by the model itself (`--grade llm`).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import msgspec

if TYPE_CHECKING:
    import httpx

# httpx, the fake provider and the gateway process are imported when a run starts:
# `memgate --help` builds this module's argument parser and must stay fast.

OPEN_TAG = "<memgate_memory>"
CLOSE_TAG = "</memgate_memory>"
REPLAY_MODEL = "fake/eval"
QUESTION_REPLY = "(memgate eval: the fake provider does not answer questions)"
DEFAULT_BUDGETS = (1000, 2000, 4000)
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}")


class EvalError(Exception):
    """The dataset or the gateway did not allow a meaningful run."""


# ---------------------------------------------------------------------------- dataset


class Turn(msgspec.Struct, frozen=True):
    id: str
    role: Literal["user", "assistant"]
    content: str


class Session(msgspec.Struct, frozen=True):
    session_id: str
    date: str
    turns: list[Turn]


class Question(msgspec.Struct, frozen=True):
    id: str
    question: str
    answer: str
    evidence: list[str]


class Resource(msgspec.Struct, frozen=True):
    resource_id: str
    sessions: list[Session]
    questions: list[Question]


class Dataset(msgspec.Struct, frozen=True):
    name: str
    resources: list[Resource]
    description: str = ""

    @property
    def counts(self) -> dict[str, int]:
        return {
            "resources": len(self.resources),
            "sessions": sum(len(r.sessions) for r in self.resources),
            "turns": sum(len(s.turns) for r in self.resources for s in r.sessions),
            "questions": sum(len(r.questions) for r in self.resources),
        }


def load_dataset(path: str | Path) -> Dataset:
    """Read and validate a dataset file; raises EvalError with what is wrong."""
    try:
        dataset = msgspec.json.decode(Path(path).read_bytes(), type=Dataset)
    except (OSError, msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise EvalError(f"{path}: {exc}") from None
    validate_dataset(dataset)
    return dataset


def validate_dataset(dataset: Dataset) -> None:
    problems: list[str] = []
    sessions_seen: set[str] = set()
    questions_seen: set[str] = set()
    resources_seen: set[str] = set()
    for resource in dataset.resources:
        where = f"resource {resource.resource_id!r}"
        if not _ID.fullmatch(resource.resource_id):
            problems.append(f"{where}: resource_id is not a valid memgate id")
        if resource.resource_id in resources_seen:
            problems.append(f"{where}: duplicate resource_id")
        resources_seen.add(resource.resource_id)
        turn_ids: set[str] = set()
        for session in resource.sessions:
            at = f"{where}, session {session.session_id!r}"
            if not _ID.fullmatch(f"eval.{session.session_id}"):
                problems.append(f"{at}: session_id is not usable in a memgate thread id")
            if session.session_id in sessions_seen:
                problems.append(f"{at}: duplicate session_id (they must be unique in the dataset)")
            sessions_seen.add(session.session_id)
            try:
                date.fromisoformat(session.date)
            except ValueError:
                problems.append(f"{at}: date {session.date!r} is not YYYY-MM-DD")
            if not session.turns or session.turns[0].role != "user":
                problems.append(f"{at}: a session starts with a user turn")
            for previous, turn in zip(session.turns, session.turns[1:]):
                if previous.role == turn.role == "assistant":
                    problems.append(f"{at}: two assistant turns in a row ({previous.id}, {turn.id})")
            for turn in session.turns:
                if turn.id in turn_ids:
                    problems.append(f"{at}: duplicate turn id {turn.id!r}")
                turn_ids.add(turn.id)
                if not turn.content.strip():
                    problems.append(f"{at}: turn {turn.id!r} is empty")
        for question in resource.questions:
            if not _ID.fullmatch(f"eval.q.{question.id}"):
                problems.append(f"{where}: question id {question.id!r} is not usable in a memgate thread id")
            if question.id in questions_seen:
                problems.append(f"{where}: duplicate question id {question.id!r}")
            questions_seen.add(question.id)
            if not question.evidence:
                problems.append(f"{where}: question {question.id!r} has no evidence")
            for turn_id in question.evidence:
                if turn_id not in turn_ids:
                    problems.append(f"{where}: question {question.id!r} cites unknown turn {turn_id!r}")
    if not questions_seen:
        problems.append("the dataset has no questions")
    if problems:
        raise EvalError("invalid dataset:\n  " + "\n  ".join(problems))


def exchanges(session: Session) -> list[tuple[list[Turn], Turn | None]]:
    """The session as chat requests: (user turns sent together, the assistant's answer)."""
    groups: list[tuple[list[Turn], Turn | None]] = []
    users: list[Turn] = []
    for turn in session.turns:
        if turn.role == "user":
            users.append(turn)
        else:
            groups.append((users, turn))
            users = []
    if users:
        groups.append((users, None))
    return groups


def session_thread(prefix: str, session: Session) -> str:
    return f"{prefix}.{session.session_id}"


def question_thread(prefix: str, question: Question) -> str:
    return f"{prefix}.q.{question.id}"


# ---------------------------------------------------------------------------- the block


def clean(text: str) -> str:
    """What the gateway does to stored text before it goes into the block."""
    return text.replace(CLOSE_TAG, "</ memgate_memory>").replace(OPEN_TAG, "< memgate_memory>")


def _whole_line_matches(block: str, needle: str) -> Iterable[str]:
    """For each place `needle` ends a line of `block`: the start of that line, up to the needle."""
    start = block.find(needle)
    while start >= 0:
        end = start + len(needle)
        if end == len(block) or block[end] == "\n":
            yield block[block.rfind("\n", 0, start) + 1 : start]
        start = block.find(needle, start + 1)


# An observation line: "- 2024-06-30 (thread eval.m4) [high] <text>"; the part before the text
# starts with "- " and ends with the priority's "] " (or the thread's ") ", or the date).
_OBSERVATION_PREFIX = re.compile(r"- .*[\])\d] ")
_THREAD_NOTE = re.compile(r"\(thread ([^)]*)\)")


def observation_injected(block: str, text: str, thread_id: str) -> bool:
    """Whether an observation with this text, of this thread, is an observation line of the block.

    Lines that name another thread ("(thread X)") do not count; lines that name none are the
    question thread's own observations and count for any thread with the same text.
    """
    for prefix in _whole_line_matches(block, clean(text)):
        if not _OBSERVATION_PREFIX.fullmatch(prefix):
            continue
        note = _THREAD_NOTE.search(prefix)
        if note is None or note.group(1) == thread_id:
            return True
    return False


def message_injected(block: str, role: str, content: str) -> bool:
    """Whether a message with this role and text is a raw message line of the block."""
    return any(prefix.endswith(f"{role}: ") for prefix in _whole_line_matches(block, clean(content)))


# ---------------------------------------------------------------------------- results


@dataclass
class QuestionResult:
    id: str
    resource_id: str
    question: str
    answer: str
    evidence: list[str]
    covered: dict[str, str] = field(default_factory=dict)  # turn id -> "observation" | "message"
    stored: list[str] = field(default_factory=list)  # evidence turns some stored observation cites
    memory: str = ""  # x-memory
    tokens: int = 0  # x-memory-tokens
    counted_tokens: int = 0  # the block's tokens, counted here
    lookup_ms: float = 0.0  # x-memory-lookup-ms
    injected_observations: int = 0  # observation records found in the block
    ranks: dict[str, int] = field(default_factory=dict)  # turn id -> 1-based position of its observation
    block: str = ""
    model_answer: str | None = None
    correct: bool | None = None

    @property
    def recalled(self) -> bool:
        return all(turn in self.covered for turn in self.evidence)

    @property
    def recalled_any(self) -> bool:
        return any(turn in self.covered for turn in self.evidence)

    @property
    def observed(self) -> bool:
        return all(turn in self.stored for turn in self.evidence)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "recalled": self.recalled, "recalled_any": self.recalled_any,
                "observed": self.observed}


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100); 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(math.ceil(p / 100 * len(ordered)) - 1, 0)]


@dataclass
class BudgetResult:
    budget: int | None
    questions: list[QuestionResult]
    observations: int = 0
    replay_s: float = 0.0
    observer_wait_s: float = 0.0
    observer_settled: bool = True

    def summary(self) -> dict[str, Any]:
        qs = self.questions
        n = len(qs) or 1
        evidence = [(q, turn) for q in qs for turn in q.evidence]
        tokens = [float(q.tokens) for q in qs]
        lookups = [q.lookup_ms for q in qs]
        graded = [q for q in qs if q.correct is not None]
        return {
            "budget": self.budget,
            "questions": len(qs),
            "evidence_recall": sum(q.recalled for q in qs) / n,
            "any_evidence_recall": sum(q.recalled_any for q in qs) / n,
            "evidence_message_recall": sum(t in q.covered for q, t in evidence) / (len(evidence) or 1),
            "covered_via_observations": sum(1 for q, t in evidence if q.covered.get(t) == "observation"),
            "covered_via_messages": sum(1 for q, t in evidence if q.covered.get(t) == "message"),
            "evidence_messages": len(evidence),
            "observer_coverage": sum(q.observed for q in qs) / n,
            "tokens_mean": sum(tokens) / n,
            "tokens_p50": percentile(tokens, 50),
            "tokens_p99": percentile(tokens, 99),
            "counted_tokens_p50": percentile([float(q.counted_tokens) for q in qs], 50),
            "lookup_ms_p50": percentile(lookups, 50),
            "lookup_ms_p99": percentile(lookups, 99),
            "memory_states": {s: sum(q.memory == s for q in qs) for s in sorted({q.memory for q in qs})},
            "answer_accuracy": (sum(bool(q.correct) for q in graded) / len(graded)) if graded else None,
            "observations": self.observations,
            "replay_s": round(self.replay_s, 2),
            "observer_wait_s": round(self.observer_wait_s, 2),
            "observer_settled": self.observer_settled,
        }

    def to_json(self) -> dict[str, Any]:
        return {**self.summary(), "results": [q.to_json() for q in self.questions]}


# ---------------------------------------------------------------------------- running


class ReplyControl(Protocol):
    """What the harness needs from the fake provider (FakeProvider or FakeProviderProcess)."""

    @property
    def requests(self) -> list[dict[str, Any]]: ...

    def reset(self) -> None: ...

    def set_behavior(self, **changes: Any) -> Any: ...


Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


class Evaluator:
    """Runs the eval's steps against one gateway whose provider `fake/...` is the fake."""

    def __init__(
        self, base_url: str, api_key: str, fake: ReplyControl, *, prefix: str = "eval",
        settle_s: float = 1.5, observer_timeout_s: float = 120.0, answer_model: str | None = None,
        grade: str = "match", progress: Progress = _quiet,
    ) -> None:
        import httpx

        self.base_url = base_url.rstrip("/")
        self.fake = fake
        self.prefix = prefix
        self.settle_s = settle_s
        self.observer_timeout_s = observer_timeout_s
        self.answer_model = answer_model
        self.grade = grade
        self.progress = progress
        self.http = httpx.Client(base_url=self.base_url, headers={"Authorization": f"Bearer {api_key}"},
                                 timeout=120)

    def close(self) -> None:
        self.http.close()

    # -- HTTP

    def _chat(self, messages: list[dict[str, Any]], *, model: str = REPLAY_MODEL,
              thread: str | None = None, resource: str | None = None) -> httpx.Response:
        headers = {"x-thread-id": thread, "x-resource-id": resource} if thread and resource else {}
        response = self.http.post("/chat/completions", json={"model": model, "messages": messages}, headers=headers)
        if response.status_code != 200:
            raise EvalError(f"chat request failed ({response.status_code}): {response.text[:500]}")
        return response

    def _list(self, path: str) -> list[dict[str, Any]]:
        response = self.http.get(path)
        if response.status_code == 404:
            return []
        response.raise_for_status()
        data: list[dict[str, Any]] = response.json()["data"]
        return data

    def messages(self, thread: str) -> list[dict[str, Any]]:
        """All the thread's messages, oldest first (a page at a time: at most 200 each)."""
        found: list[dict[str, Any]] = []
        while page := self._list(f"/memory/threads/{thread}/messages?limit=200&offset={len(found)}"):
            found += page
        return found

    def observations(self, thread: str) -> list[dict[str, Any]]:
        return self._list(f"/memory/threads/{thread}/observations")

    # -- steps

    def replay(self, resource: Resource) -> dict[str, dict[str, Any]]:
        """Send every session of the resource; returns turn id -> stored message."""
        stored: dict[str, dict[str, Any]] = {}
        for session in resource.sessions:
            thread = session_thread(self.prefix, session)
            groups = exchanges(session)
            for users, assistant in groups:
                self.fake.set_behavior(reply=assistant.content if assistant else QUESTION_REPLY)
                self._chat([{"role": "user", "content": t.content} for t in users],
                           thread=thread, resource=resource.resource_id)
            stored.update(map_turns(groups, self.messages(thread), thread))
        return stored

    def wait_for_observer(self, resources: list[Resource], last_exchange: dict[str, str]) -> tuple[int, bool]:
        """Poll observations until the observer is done; returns (count, settled)."""
        threads = [session_thread(self.prefix, s) for r in resources for s in r.sessions]
        deadline = time.monotonic() + self.observer_timeout_s
        previous, changed_at = -1, time.monotonic()
        while True:
            found = {t: self.observations(t) for t in threads}
            total = sum(len(v) for v in found.values())
            now = time.monotonic()
            if total != previous:
                previous, changed_at = total, now
            newest_done = all(any(o["exchange_id"] == last_exchange[t] for o in found[t]) for t in threads)
            every_thread = all(found.values())
            quiet = now - changed_at
            if newest_done or (every_thread and quiet >= self.settle_s) or (total and quiet >= 5 * self.settle_s):
                return total, True
            if now > deadline:
                self.progress(f"observer not settled after {self.observer_timeout_s:g}s; asking anyway")
                return total, False
            time.sleep(0.25)

    def ask(self, resource: Resource, question: Question) -> QuestionResult:
        self.fake.reset()
        self.fake.set_behavior(reply=QUESTION_REPLY)
        response = self._chat([{"role": "user", "content": question.question}],
                              thread=question_thread(self.prefix, question), resource=resource.resource_id)
        block = captured_block(self.fake.requests, question.question)
        result = QuestionResult(
            id=question.id, resource_id=resource.resource_id, question=question.question, answer=question.answer,
            evidence=list(question.evidence), memory=response.headers.get("x-memory", ""),
            tokens=int(response.headers.get("x-memory-tokens") or 0),
            lookup_ms=float(response.headers.get("x-memory-lookup-ms") or 0.0), block=block,
        )
        if block:
            from memgate_core.tokens import count_tokens

            result.counted_tokens = count_tokens(block)
        if self.answer_model:
            result.model_answer, result.correct = self.answer(question, block)
        return result

    def answer(self, question: Question, block: str) -> tuple[str, bool]:
        """The real model's answer with exactly the captured block, and its grade."""
        memory = [{"role": "system", "content": block}] if block else []
        assert self.answer_model is not None
        reply = _content(self._chat([*memory, {"role": "user", "content": question.question}],
                                    model=self.answer_model))
        if self.grade == "llm":
            verdict = _content(self._chat([{"role": "user", "content": GRADER_PROMPT.format(
                question=question.question, answer=question.answer, response=reply)}], model=self.answer_model))
            return reply, verdict.strip().upper().startswith("CORRECT")
        return reply, _normal(question.answer) in _normal(reply)

    def run(self, dataset: Dataset, budget: int | None = None) -> BudgetResult:
        started = time.monotonic()
        stored: dict[str, dict[str, dict[str, Any]]] = {}
        last_exchange: dict[str, str] = {}
        for resource in dataset.resources:
            stored[resource.resource_id] = self.replay(resource)
            for session in resource.sessions:
                thread = session_thread(self.prefix, session)
                last_exchange[thread] = stored[resource.resource_id][session.turns[-1].id]["exchange_id"]
        replay_s = time.monotonic() - started
        self.progress(f"budget {budget}: replayed {dataset.counts['turns']} turns in {replay_s:.1f}s; "
                      "waiting for the observer")
        started = time.monotonic()
        total, settled = self.wait_for_observer(dataset.resources, last_exchange)
        wait_s = time.monotonic() - started
        self.progress(f"budget {budget}: {total} observations after {wait_s:.1f}s; asking "
                      f"{dataset.counts['questions']} questions")

        results = []
        for resource in dataset.resources:
            asked = [self.ask(resource, q) for q in resource.questions]
            # Read after asking: every observation a block could hold exists by now.
            records = [o for s in resource.sessions for o in self.observations(session_thread(self.prefix, s))]
            for question, result in zip(resource.questions, asked):
                score(result, question, stored[resource.resource_id], records)
            results.extend(asked)
        return BudgetResult(budget, results, total, replay_s, wait_s, settled)


def map_turns(groups: list[tuple[list[Turn], Turn | None]], messages: list[dict[str, Any]],
              thread: str) -> dict[str, dict[str, Any]]:
    """Dataset turn id -> memgate's stored message, exchange by exchange, in order.

    Messages of one exchange share an exchange id; within it, each turn takes the first
    unused message with the same role and text.
    """
    by_exchange: list[list[dict[str, Any]]] = []
    for message in messages:
        if by_exchange and by_exchange[-1][0]["exchange_id"] == message["exchange_id"]:
            by_exchange[-1].append(message)
        else:
            by_exchange.append([message])
    if len(by_exchange) != len(groups):
        raise EvalError(f"thread {thread}: {len(groups)} exchanges sent, {len(by_exchange)} stored")
    mapped: dict[str, dict[str, Any]] = {}
    for (users, assistant), stored in zip(groups, by_exchange):
        unused = list(stored)
        for turn in [*users, *([assistant] if assistant else [])]:
            match = next((m for m in unused if m["role"] == turn.role and m["content"] == turn.content), None)
            if match is None:
                raise EvalError(f"thread {thread}: turn {turn.id} ({turn.role}) was not stored as sent")
            unused.remove(match)
            mapped[turn.id] = match
    return mapped


def captured_block(requests: list[dict[str, Any]], question: str) -> str:
    """The memory block of the provider request that carried `question` ('' when none)."""
    for request in reversed(requests):
        body = request.get("body")
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            continue
        messages = body["messages"]
        if not messages or messages[-1].get("content") != question:
            continue
        system = next((m for m in messages if m.get("role") == "system"), None)
        content = system.get("content") if system else None
        return content if isinstance(content, str) and content.startswith(OPEN_TAG) else ""
    raise EvalError(f"the fake provider did not receive the question {question!r}")


def score(result: QuestionResult, question: Question, stored: dict[str, dict[str, Any]],
          records: list[dict[str, Any]]) -> None:
    """Fill in which evidence messages the block covers, and how."""
    injected = [o for o in records if observation_injected(result.block, o["text"], o["thread_id"])]
    injected.sort(key=lambda o: result.block.find(clean(o["text"])))  # block order
    result.injected_observations = len(injected)
    for turn_id in question.evidence:
        message = stored[turn_id]
        if any(message["id"] in o.get("source_message_ids", []) for o in records):
            result.stored.append(turn_id)
        rank = next((i for i, o in enumerate(injected, 1) if message["id"] in o.get("source_message_ids", [])), None)
        if rank is not None:
            result.covered[turn_id] = "observation"
            result.ranks[turn_id] = rank
        elif message_injected(result.block, message["role"], message["content"]):
            result.covered[turn_id] = "message"


GRADER_PROMPT = (
    "You grade answers of an assistant with long-term memory.\n"
    "Question: {question}\nCorrect answer: {answer}\nAssistant's answer: {response}\n"
    "Does the assistant's answer state the correct answer (wording may differ)? "
    "Reply with exactly one word: CORRECT or WRONG."
)


def _content(response: httpx.Response) -> str:
    try:
        return response.json()["choices"][0]["message"]["content"] or ""
    except (KeyError, IndexError, TypeError, ValueError):
        return ""


def _normal(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


# ---------------------------------------------------------------------------- whole runs


def run_budgets(
    dataset: Dataset, budgets: Iterable[int], *, observer_model: str = "local", workdir: Path | None = None,
    answer_model: str | None = None, grade: str = "match", settle_s: float | None = None,
    progress: Progress = _quiet,
) -> list[BudgetResult]:
    """One fresh `memgate up` (and data dir) per budget, all on one in-process fake provider."""
    from memgate_testing.fake_provider import FakeProvider
    from memgate_testing.gateway import GatewayProcess

    if settle_s is None:
        settle_s = 1.5 if observer_model == "local" else 15.0
    results = []
    with tempfile.TemporaryDirectory(prefix="memgate-eval-") as tmp, FakeProvider() as fake:
        root = workdir or Path(tmp)
        for budget in budgets:
            data_dir = root / f"budget-{budget}" / "data"
            if data_dir.exists():
                raise EvalError(f"{data_dir} exists; use an empty --workdir")
            gateway = GatewayProcess(data_dir, provider_url=fake.base_url, env={
                "MEMGATE_CONTEXT_BUDGET_TOKENS": str(budget), "MEMGATE_OBSERVER_MODEL": observer_model,
                "MEMGATE_LOG_LEVEL": "WARNING",
            })
            progress(f"budget {budget}: starting memgate up ({data_dir})")
            with gateway:
                evaluator = Evaluator(gateway.base_url, gateway.api_key, fake, settle_s=settle_s,
                                      answer_model=answer_model, grade=grade, progress=progress)
                try:
                    results.append(evaluator.run(dataset, budget))
                finally:
                    evaluator.close()
    return results


def format_report(dataset: Dataset, results: list[BudgetResult], *, observer_model: str = "local",
                  verbose: bool = False) -> str:
    counts = dataset.counts
    lines = [
        f"memgate memory eval: dataset {dataset.name} ({counts['resources']} resources, {counts['sessions']} "
        f"sessions, {counts['turns']} turns, {counts['questions']} questions); observer {observer_model}",
        "questions are asked in new threads: recall is cross-thread",
        "",
        f"{'budget':>7} {'recall':>7} {'any':>6} {'msgs':>6} {'obs/raw':>8} {'observed':>9} "
        f"{'tokens p50/p99':>15} {'lookup ms p50/p99':>18} {'answers':>8}",
    ]
    for result in results:
        s = result.summary()
        accuracy = "-" if s["answer_accuracy"] is None else f"{s['answer_accuracy']:.0%}"
        lines.append(
            f"{s['budget']:>7} {s['evidence_recall']:>7.1%} {s['any_evidence_recall']:>6.0%} "
            f"{s['evidence_message_recall']:>6.0%} {s['covered_via_observations']:>4}/{s['covered_via_messages']:<3} "
            f"{s['observer_coverage']:>9.0%} {s['tokens_p50']:>7.0f}/{s['tokens_p99']:<7.0f} "
            f"{s['lookup_ms_p50']:>9.2f}/{s['lookup_ms_p99']:<8.2f} {accuracy:>8}"
        )
    lines += [
        "",
        "recall: questions with all evidence in the block; any: with some of it; msgs: evidence messages covered;",
        "obs/raw: evidence messages covered through an observation's provenance / as a raw message;",
        "observed: questions whose evidence some stored observation cites (what retrieval could find);",
        "tokens: x-memory-tokens; lookup: x-memory-lookup-ms; answers: graded answers (--answer-model).",
    ]
    for result in results:
        missed = [q for q in result.questions if not q.recalled]
        if missed or verbose:
            lines += ["", f"budget {result.budget}: {len(missed)} missed"]
        for q in result.questions if verbose else missed:
            mark = "ok  " if q.recalled else "MISS"
            lack = [t for t in q.evidence if t not in q.covered]
            why = "" if q.recalled else (" (not observed)" if not q.observed else " (observed, not retrieved)")
            extra = f" | answer: {q.model_answer!r} {'correct' if q.correct else 'wrong'}" if q.model_answer else ""
            lines.append(f"  {mark} {q.id}: {q.question} [{', '.join(lack) or 'all covered'}]{why}"
                         f" tokens {q.tokens}{extra}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, type=Path, help="dataset JSON (see docs/eval.md)")
    parser.add_argument("--budgets", default=",".join(map(str, DEFAULT_BUDGETS)),
                        help="injected-token budgets, one gateway each (default 1000,2000,4000)")
    parser.add_argument("--json", type=Path, default=None, help="also write the full report here")
    parser.add_argument("--observer-model", default="local",
                        help="MEMGATE_OBSERVER_MODEL for the gateways (default local; a real model needs its key)")
    parser.add_argument("--answer-model", default=None,
                        help="also ask this model (e.g. openai/gpt-4o-mini, key from the environment) with the "
                             "captured block and grade its answers")
    parser.add_argument("--grade", choices=("match", "llm"), default="match",
                        help="with --answer-model: answer string in the reply (match) or the model as judge (llm)")
    parser.add_argument("--settle", type=float, default=None,
                        help="seconds without new observations that mean the observer is done "
                             "(default 1.5 with the local observer, 15 otherwise)")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the gateways' data and logs here")
    parser.add_argument("--verbose", "-v", action="store_true", help="list every question, not only misses")


def main_with(args: argparse.Namespace) -> int:
    try:
        budgets = [int(b) for b in str(args.budgets).split(",") if b.strip()]
    except ValueError:
        print(f"memgate eval: --budgets must be whole numbers, got {args.budgets!r}", file=sys.stderr)
        return 2
    try:
        dataset = load_dataset(args.dataset)
        results = run_budgets(
            dataset, budgets, observer_model=args.observer_model, workdir=args.workdir,
            answer_model=args.answer_model, grade=args.grade, settle_s=args.settle,
            progress=lambda line: print(line, file=sys.stderr, flush=True),
        )
    except EvalError as exc:
        print(f"memgate eval: {exc}", file=sys.stderr)
        return 1
    print(format_report(dataset, results, observer_model=args.observer_model, verbose=args.verbose))
    if args.json:
        report = {"dataset": dataset.name, **dataset.counts, "observer_model": args.observer_model,
                  "answer_model": args.answer_model, "budgets": [r.to_json() for r in results]}
        args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="memgate-eval", description="memgate's memory eval (evidence recall).")
    add_arguments(parser)
    return main_with(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
