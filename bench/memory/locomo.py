"""LoCoMo memory benchmark: evidence recall of memgate's injected block on long real
conversations, beside BM25, dense and RRF baselines over the raw turns.

Each LoCoMo conversation is imported, session by session with its dates, through
POST /v1/memory/threads/{id}/messages into a fresh `memgate up` (one per mode; local
observer, in-process fake provider), once per budget, each copy its own resource: a
question asked is remembered like any exchange, so each budget's questions must not be
recalled at the others. Once the observer has handled every imported exchange, each
question is asked by chat completion at its budget (`x-memory-budget-tokens`) and the
memory block the fake provider received is scored by the evidence rule (`covered`). Modes:

- cross: each session is its own thread of the conversation's resource; each question
  goes to a new thread of that resource (recall across threads).
- same: all sessions in one thread; the questions are asked one after another in it.

Observers (`--observer`):

- local (default): MEMGATE_OBSERVER_MODEL=local, the rule-based observer.
- authors: MEMGATE_OBSERVER_MODEL=fake/observer (the LLM Observer, through the fake
  provider) and MEMGATE_REFLECTOR_MODEL=local. The fake provider answers each Observer
  request with the dataset authors' own LLM-written observations (`session_N_observation`):
  each new message of the prompt is matched to its turn by its replayed text and send
  date, and every authors' observation of a turn in the batch becomes a
  `- [high] HH:MM <text> {Mx}` line citing the batch's messages of its dia ids. An upper
  bound for an LLM observer as good as the authors' notes, with memgate's retrieval.

The baselines rank the conversation's replayed turns for each question and take them in
rank order, skipping any that would not fit, up to the budget (o200k tokens of the turn
texts); their text is scored by the same rule. docs/eval.md describes the method.

    .venv/bin/python bench/memory/locomo.py [--data DIR] [--budgets 1000,2000,4000]
        [--modes cross,same] [--conversations 26,30] [--observer local|authors] [--json PATH]
        [--baselines-only]

The report goes to stdout, progress to stderr.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from memgate_core.tokens import count_tokens
from memgate_testing.eval import captured_block, percentile

REPO = Path(__file__).resolve().parents[2]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "locomo-dev"
DEFAULT_BUDGETS = (1000, 2000, 4000)
MODES = ("cross", "same")
MODE_TITLES = {"cross": "cross-thread (each session its own thread; questions in new threads)",
               "same": "same-thread (all sessions in one thread; questions asked in it)"}
CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop"}
LEFT_OUT_CATEGORY = 5  # adversarial: no answer in the conversation
MODEL = "fake/eval"
REPLY = "I don't remember."
COVERAGE = 0.6  # share of a turn's content words the injected text must hold
BM25_K1, BM25_B = 1.2, 0.75
RRF_K = 60
OBSERVER_TIMEOUT_S = 300.0
OBSERVERS = ("local", "authors")
AUTHORS_OBSERVER_MODEL = "fake/observer"  # the fake provider's model for --observer authors
DATE_FORMAT = "%I:%M %p on %d %B, %Y"  # "1:56 pm on 8 May, 2023"

# The classic English stopword list (NLTK's 179 words).
STOPWORDS = frozenset("""
i me my myself we our ours ourselves you you're you've you'll you'd your yours yourself yourselves he him his
himself she she's her hers herself it it's its itself they them their theirs themselves what which who whom this
that that'll these those am is are was were be been being have has had having do does did doing a an the and but
if or because as until while of at by for with about against between into through during before after above below
to from up down in out on off over under again further then once here there when where why how all any both each
few more most other some such no nor not only own same so than too very s t can will just don don't should
should've now d ll m o re ve y ain aren aren't couldn couldn't didn didn't doesn doesn't hadn hadn't hasn hasn't
haven haven't isn isn't ma mightn mightn't mustn mustn't needn needn't shan shan't shouldn shouldn't wasn wasn't
weren weren't won won't wouldn wouldn't
""".split())
_WORD = re.compile(r"[a-z0-9]+")
_SESSION = re.compile(r"session_(\d+)")
_EVIDENCE = re.compile(r"D\s*:?\s*(\d+)\s*:\s*(\d+)")  # "D3:7", and "D:11:26", "D30:05", "D8:6; D9:17"

Progress = Callable[[str], None]


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- the data


@dataclass(frozen=True)
class Turn:
    dia_id: str  # "D<session>:<turn>"
    role: str  # speaker_a: user; speaker_b: assistant
    text: str  # as replayed: "<speaker>: <text>[ [shared a photo: <caption>]]"
    created_at: float  # the session's date-time plus the turn's index in seconds


@dataclass(frozen=True)
class Session:
    number: int
    turns: list[Turn]


@dataclass(frozen=True)
class Question:
    index: int  # in the conversation's qa list
    question: str
    answer: str
    category: int
    evidence: list[str]  # known dia ids, normalised


@dataclass(frozen=True)
class AuthorObservation:
    """One of the dataset authors' observations (`session_N_observation`)."""

    text: str
    dia_ids: tuple[str, ...]  # normalised


@dataclass
class Conversation:
    stem: str
    sessions: list[Session]
    questions: list[Question]
    left_out: Counter[str] = field(default_factory=Counter)  # why questions were left out
    observations: list[AuthorObservation] = field(default_factory=list)  # the authors', session by session

    @property
    def resource_id(self) -> str:
        return f"locomo-{self.stem}"

    @property
    def turns(self) -> list[Turn]:
        return [t for s in self.sessions for t in s.turns]


def turn_text(turn: dict[str, Any]) -> str:
    text = f"{turn['speaker']}: {turn['text']}"
    caption = turn.get("blip_caption")
    return f"{text} [shared a photo: {caption}]" if caption else text


def normalise_evidence(evidence: Iterable[str]) -> list[str]:
    """Dia ids as the turns have them: "D:11:26" -> "D11:26", "D30:05" -> "D30:5"."""
    return [f"D{int(s)}:{int(t)}" for item in evidence for s, t in _EVIDENCE.findall(str(item))]


def load_conversation(path: Path) -> Conversation:
    """One LoCoMo file. Sessions without turns are skipped; category 5 questions and those
    whose evidence names no known turn are left out (counted in `left_out`); evidence ids
    that name no turn are dropped from a question that has others."""
    data = json.loads(path.read_text())
    speaker_a = data["speaker_a"]
    sessions = []
    for key in sorted((k for k in data if _SESSION.fullmatch(k)), key=lambda k: int(k.split("_")[1])):
        number = int(key.split("_")[1])
        raw_turns = data[key]
        if not isinstance(raw_turns, list) or not raw_turns:
            continue
        start = datetime.strptime(data[f"{key}_date_time"].strip(), DATE_FORMAT).replace(tzinfo=UTC)
        sessions.append(Session(number, [
            Turn(t["dia_id"], "user" if t["speaker"] == speaker_a else "assistant", turn_text(t),
                 (start + timedelta(seconds=i)).timestamp())
            for i, t in enumerate(raw_turns)
        ]))
    known = {t.dia_id for s in sessions for t in s.turns}
    observations = []
    for key in sorted((k for k in data if re.fullmatch(r"session_\d+_observation", k)),
                      key=lambda k: int(k.split("_")[1])):
        for items in (data[key] or {}).values():
            for item in items:
                if isinstance(item, list) and len(item) == 2 and isinstance(item[0], str):
                    ids = item[1] if isinstance(item[1], list) else [item[1]]
                    observations.append(AuthorObservation(item[0], tuple(dict.fromkeys(normalise_evidence(ids)))))
    conversation = Conversation(path.stem, sessions, [], observations=observations)
    for index, qa in enumerate(data["qa"]):
        if qa["category"] == LEFT_OUT_CATEGORY:
            conversation.left_out["category 5"] += 1
            continue
        ids = normalise_evidence(qa.get("evidence") or [])
        evidence = list(dict.fromkeys(i for i in ids if i in known))
        conversation.left_out["unknown evidence ids dropped"] += len(set(ids) - known)
        if not evidence:
            conversation.left_out["evidence names no known turn"] += 1
            continue
        conversation.questions.append(Question(index, qa["question"], str(qa.get("answer", "")), qa["category"],
                                               evidence))
    return conversation


def load_conversations(data_dir: Path, only: Sequence[str] | None = None) -> list[Conversation]:
    paths = sorted(data_dir.glob("*.json"), key=lambda p: (len(p.stem), p.stem))
    if only:
        missing = set(only) - {p.stem for p in paths}
        if missing:
            raise SystemExit(f"no conversation {', '.join(sorted(missing))} in {data_dir}")
        paths = [p for p in paths if p.stem in only]
    if not paths:
        raise SystemExit(f"no LoCoMo conversations (*.json) in {data_dir}")
    return [load_conversation(p) for p in paths]


# ---------------------------------------------------------------------------- the evidence rule


def tokens_of(text: str) -> list[str]:
    """Content words, in order and repeated: lowercased [a-z0-9]+ of 3+ characters, no stopwords."""
    return [w for w in _WORD.findall(text.lower()) if len(w) >= 3 and w not in STOPWORDS]


def content_words(text: str) -> frozenset[str]:
    return frozenset(tokens_of(text))


def covered(turn_words: frozenset[str], injected: frozenset[str]) -> bool:
    """A turn is covered when at least 60% of its content words are in the injected text
    (a turn with none is covered)."""
    return not turn_words or len(turn_words & injected) >= COVERAGE * len(turn_words)


def recalled(evidence: Iterable[frozenset[str]], injected_text: str) -> bool:
    """A question is recalled when every evidence turn is covered by the injected text."""
    injected = content_words(injected_text)
    return all(covered(words, injected) for words in evidence)


# ---------------------------------------------------------------------------- baselines


class Bm25:
    """Okapi BM25 over content words (k1 1.2, b 0.75)."""

    def __init__(self, documents: list[list[str]]) -> None:
        self.documents = [Counter(d) for d in documents]
        self.lengths = [len(d) for d in documents]
        self.average = sum(self.lengths) / max(len(documents), 1) or 1.0
        frequency = Counter(w for d in self.documents for w in d)
        n = len(documents)
        self.idf = {w: math.log(1 + (n - f + 0.5) / (f + 0.5)) for w, f in frequency.items()}

    def scores(self, query: list[str]) -> list[float]:
        terms = [w for w in set(query) if w in self.idf]
        out = []
        for counts, length in zip(self.documents, self.lengths):
            norm = BM25_K1 * (1 - BM25_B + BM25_B * length / self.average)
            out.append(sum(self.idf[w] * counts[w] * (BM25_K1 + 1) / (counts[w] + norm) for w in terms if w in counts))
        return out


def ranking(scores: Sequence[float]) -> list[int]:
    """Turn indexes, best first (ties: earlier turn first)."""
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))


def rrf(*rankings: list[int]) -> list[int]:
    fused: dict[int, float] = {}
    for ranked in rankings:
        for rank, i in enumerate(ranked, 1):
            fused[i] = fused.get(i, 0.0) + 1 / (RRF_K + rank)
    return sorted(fused, key=lambda i: (-fused[i], i))


def fill(ranked: list[int], tokens: list[int], budget: int) -> list[int]:
    """Turns in rank order, skipping any that would not fit, while the budget allows."""
    chosen, used = [], 0
    for i in ranked:
        if used + tokens[i] <= budget:
            chosen.append(i)
            used += tokens[i]
    return chosen


@dataclass
class BaselineResult:
    recalled: bool
    tokens: int


BASELINES = ("bm25", "dense", "rrf")


def run_baselines(conversations: list[Conversation], budgets: Sequence[int],
                  say: Progress = progress) -> dict[tuple[str, int, str, int], BaselineResult]:
    """(conversation, question index, method, budget) -> result."""
    import numpy as np

    from memgate_vectors.embeddings import Embedder

    embedder = Embedder()
    results: dict[tuple[str, int, str, int], BaselineResult] = {}
    for c in conversations:
        started = time.monotonic()
        turns = c.turns
        texts = [t.text for t in turns]
        words = [content_words(t) for t in texts]
        by_id = {t.dia_id: i for i, t in enumerate(turns)}
        tokens = [count_tokens(t) for t in texts]
        bm25 = Bm25([tokens_of(t) for t in texts])
        vectors = np.array(embedder.embed(texts))  # each turn once per conversation
        queries = np.array(embedder.embed([q.question for q in c.questions]))
        for q, query in zip(c.questions, queries):
            dense = ranking((vectors @ query).tolist())  # unit vectors: the dot product is the cosine
            rankings = {"bm25": ranking(bm25.scores(tokens_of(q.question))), "dense": dense}
            rankings["rrf"] = rrf(rankings["bm25"], dense)
            evidence = [words[by_id[e]] for e in q.evidence]
            for method, ranked in rankings.items():
                for budget in budgets:
                    chosen = fill(ranked, tokens, budget)
                    text = "\n".join(texts[i] for i in chosen)
                    results[(c.stem, q.index, method, budget)] = BaselineResult(
                        recalled(evidence, text), sum(tokens[i] for i in chosen))
        say(f"baselines: conversation {c.stem} ({len(turns)} turns, {len(c.questions)} questions) "
            f"in {time.monotonic() - started:.1f}s")
    return results


# ---------------------------------------------------------------------------- the authors' observer


_SENT = "%Y-%m-%d %H:%M UTC"  # a NEW MESSAGES line's "sent"


def _fact(text: str) -> str:
    """An authors' observation as one line of the Observer's format."""
    fact = " ".join(text.split()).replace("{", "(").replace("}", ")")
    return fact[:1000].rstrip()


class AuthorsObserver:
    """The fake provider's responder for `--observer authors`: plays the Observer LLM with the
    dataset authors' observations; any other request (the bench's questions) gets REPLY."""

    def __init__(self, conversations: list[Conversation]) -> None:
        from memgate_observer.prompt import OBSERVER_SYSTEM

        self.system = OBSERVER_SYSTEM
        self.turns: dict[tuple[str, str], list[tuple[str, str]]] = {}  # (text, sent day) -> [(stem, dia id)]
        self.about: dict[tuple[str, str], list[tuple[str, int]]] = {}  # (stem, dia id) -> [(stem, observation)]
        self.observations: dict[str, list[AuthorObservation]] = {}
        for c in conversations:
            for t in c.turns:
                day = datetime.fromtimestamp(t.created_at, UTC).strftime("%Y-%m-%d")
                self.turns.setdefault((t.text.strip(), day), []).append((c.stem, t.dia_id))
            self.observations[c.stem] = c.observations
            for i, o in enumerate(c.observations):
                for dia_id in o.dia_ids:
                    self.about.setdefault((c.stem, dia_id), []).append((c.stem, i))
        self.stats: Counter[str] = Counter()

    def __call__(self, body: dict[str, Any]) -> str:
        messages = body.get("messages") or []
        if len(messages) < 2 or messages[0].get("content") != self.system:
            self.stats["other requests"] += 1
            return REPLY
        self.stats["observer requests"] += 1
        return self.answer(str(messages[1].get("content") or ""))

    def answer(self, prompt: str) -> str:
        """The Observer's answer for a prompt's NEW MESSAGES ('NONE' when no observation applies)."""
        lines = prompt.split("\n")
        new = [json.loads(line) for line in lines[lines.index("NEW MESSAGES:") + 1:] if line.strip()]
        cited: dict[tuple[str, int], list[str]] = {}  # observation -> the batch's ids of its turns
        first: dict[tuple[str, int], datetime] = {}  # observation -> its first cited message's send time
        for m in new:
            sent = datetime.strptime(m["sent"], _SENT)
            found = self.turns.get((str(m.get("text", "")).strip(), sent.strftime("%Y-%m-%d")), [])
            self.stats["messages matched" if found else "messages not matched"] += 1
            for turn in found:
                for key in self.about.get(turn, []):
                    aliases = cited.setdefault(key, [])
                    if m["id"] not in aliases:
                        aliases.append(m["id"])
                    first.setdefault(key, sent)
        if not cited:
            return "NONE"
        out: list[str] = []
        day = None
        for key in sorted(cited, key=lambda k: (first[k], k[1])):
            sent = first[key]
            if sent.strftime("%Y-%m-%d") != day:
                day = sent.strftime("%Y-%m-%d")
                out.append(f"## {day}")
            fact = _fact(self.observations[key[0]][key[1]].text)
            out.append(f"- [high] {sent:%H:%M} {fact} {{{', '.join(cited[key])}}}")
            self.stats["observation lines"] += 1
        return "\n".join(out)


# ---------------------------------------------------------------------------- memgate


@dataclass
class MemgateResult:
    stem: str
    index: int
    question: str
    answer: str
    category: int
    evidence: list[str]
    recalled: bool
    memory: str  # x-memory
    header_tokens: int  # x-memory-tokens
    tokens: int  # the block's o200k tokens
    lookup_ms: float  # x-memory-lookup-ms
    block: str


@dataclass
class GatewayRun:
    mode: str
    budget: int
    results: list[MemgateResult]
    exchanges: int
    import_s: float
    observer_wait_s: float
    observer_settled: bool
    ask_s: float
    observer: str = "local"
    observations: Counter[str] = field(default_factory=Counter)  # stored observations by their observer


def resource_of(c: Conversation, budget: int) -> str:
    """Each budget asks its questions of its own copy of the conversation: in a resource of
    one budget's asks only, as a deployment with that budget would have it (asks are
    remembered too, and would otherwise be recalled at the other budgets)."""
    return f"{c.resource_id}.b{budget}"


def threads_of(mode: str, c: Conversation, budget: int) -> list[tuple[str, Session]]:
    resource = resource_of(c, budget)
    if mode == "cross":
        return [(f"{resource}.s{s.number}", s) for s in c.sessions]
    return [(f"{resource}.all", s) for s in c.sessions]


def question_thread(mode: str, c: Conversation, q: Question, budget: int) -> str:
    resource = resource_of(c, budget)
    return f"{resource}.q{q.index}" if mode == "cross" else f"{resource}.all"


def observed_exchanges(http: Any) -> float:
    """memgate_exchanges_observed_total, summed over outcomes (from GET /metrics)."""
    response = http.get("/metrics")
    response.raise_for_status()
    total = 0.0
    for line in response.text.splitlines():
        if line.startswith("memgate_exchanges_observed_total"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def wait_for_observer(http: Any, exchanges: int, say: Progress) -> bool:
    """Until the observer has handled `exchanges` exchanges (or the timeout: False)."""
    deadline = time.monotonic() + OBSERVER_TIMEOUT_S
    while (done := observed_exchanges(http)) < exchanges:
        if time.monotonic() > deadline:
            say(f"observer not settled after {OBSERVER_TIMEOUT_S:g}s ({done:.0f}/{exchanges} exchanges); asking anyway")
            return False
        time.sleep(0.25)
    time.sleep(1.0)  # the last exchanges' vectors and caches
    return True


def stored_observations(http: Any, conversations: list[Conversation], mode: str, budgets: Sequence[int]) -> Counter[str]:
    """The imported threads' observations by the observer that wrote them (GET .../observations)."""
    observers: Counter[str] = Counter()
    for c in conversations:
        for thread in dict.fromkeys(t for b in budgets for t, _ in threads_of(mode, c, b)):
            response = http.get(f"/v1/memory/threads/{thread}/observations")
            response.raise_for_status()
            observers.update(str(o.get("observer")) for o in response.json()["data"])
    return observers


def run_gateway(mode: str, budgets: Sequence[int], conversations: list[Conversation], fake: Any, root: Path,
                say: Progress = progress, observer: str = "local") -> list[GatewayRun]:
    """One fresh `memgate up` per mode: import every conversation once per budget (its own
    resource, `resource_of`), wait for the observer, ask each question at each budget
    (`x-memory-budget-tokens`) in that budget's resource."""
    import httpx

    from memgate_testing.gateway import GatewayProcess

    models = ({"MEMGATE_OBSERVER_MODEL": AUTHORS_OBSERVER_MODEL, "MEMGATE_REFLECTOR_MODEL": "local"}
              if observer == "authors" else {"MEMGATE_OBSERVER_MODEL": "local"})
    gateway = GatewayProcess(root / mode / "data", provider_url=fake.base_url, traces=False, env={
        **models, "MEMGATE_LOG_LEVEL": "WARNING",
    })
    say(f"{mode}: starting memgate up")
    with gateway, httpx.Client(base_url=gateway.url, headers=gateway.headers(), timeout=120) as http:
        started = time.monotonic()
        exchanges = 0
        for c, budget in ((c, b) for c in conversations for b in budgets):
            for thread, session in threads_of(mode, c, budget):
                messages = [{"role": t.role, "content": t.text, "created_at": t.created_at} for t in session.turns]
                response = http.post(f"/v1/memory/threads/{thread}/messages",
                                     json={"resource_id": resource_of(c, budget), "messages": messages})
                if response.status_code != 201:
                    raise SystemExit(f"import into {thread} failed ({response.status_code}): {response.text[:500]}")
                exchanges += response.json()["exchanges"]
        import_s = time.monotonic() - started
        say(f"{mode}: imported {exchanges} exchanges in {import_s:.1f}s; waiting for the observer")
        started = time.monotonic()
        settled = wait_for_observer(http, exchanges, say)
        wait_s = time.monotonic() - started
        observations = stored_observations(http, conversations, mode, budgets)
        say(f"{mode}: stored observations by observer {dict(observations)}")
        say(f"{mode}: observer done in {wait_s:.1f}s; asking "
            f"{sum(len(c.questions) for c in conversations)} questions at {len(budgets)} budgets")
        started = time.monotonic()
        results: dict[int, list[MemgateResult]] = {b: [] for b in budgets}
        for c in conversations:
            for q in c.questions:
                for budget in budgets:
                    results[budget].append(ask(http, fake, mode, c, q, budget))
        ask_s = (time.monotonic() - started) / len(budgets)
    return [GatewayRun(mode, b, results[b], exchanges, import_s, wait_s, settled, ask_s, observer, observations)
            for b in budgets]


def ask(http: Any, fake: Any, mode: str, c: Conversation, q: Question, budget: int) -> MemgateResult:
    fake.reset()
    if fake.responder is None:  # else the responder (--observer authors) answers REPLY to the questions
        fake.set_behavior(reply=REPLY)
    response = http.post("/v1/chat/completions", json={"model": MODEL, "messages": [
        {"role": "user", "content": q.question}]}, headers={
        "x-thread-id": question_thread(mode, c, q, budget), "x-resource-id": resource_of(c, budget),
        "x-memory-budget-tokens": str(budget)})
    if response.status_code != 200:
        raise SystemExit(f"question {c.stem}#{q.index} failed ({response.status_code}): {response.text[:500]}")
    block = captured_block(fake.requests, q.question)
    by_id = {t.dia_id: t for t in c.turns}
    return MemgateResult(
        c.stem, q.index, q.question, q.answer, q.category, q.evidence,
        recalled([content_words(by_id[e].text) for e in q.evidence], block),
        response.headers.get("x-memory", ""), int(response.headers.get("x-memory-tokens") or 0),
        count_tokens(block), float(response.headers.get("x-memory-lookup-ms") or 0.0), block,
    )


# ---------------------------------------------------------------------------- report


def _share(flags: Sequence[bool]) -> str:
    return f"{sum(flags) / len(flags):6.1%}" if flags else "     -"


def format_mode(mode: str, budgets: Sequence[int], questions: list[tuple[Conversation, Question]],
                baselines: dict[tuple[str, int, str, int], BaselineResult], runs: dict[int, GatewayRun]) -> list[str]:
    def base(method: str, budget: int, keep: Callable[[Question], bool] = lambda q: True) -> list[bool]:
        return [baselines[(c.stem, q.index, method, budget)].recalled for c, q in questions if keep(q)]

    lines = [f"mode {mode}: {MODE_TITLES[mode]}", "",
             f"{'budget':>7} {'memgate':>8} {'bm25':>7} {'dense':>7} {'rrf':>7}   {'tokens p50/p90':>14}"
             f"   {'lookup ms p50/p99':>17}"]
    for budget in budgets:
        run = runs.get(budget)
        if run:
            tokens = [float(r.tokens) for r in run.results]
            lookups = [r.lookup_ms for r in run.results]
            mine = f"{_share([r.recalled for r in run.results]):>8}"
            sizes = f"{percentile(tokens, 50):>6.0f}/{percentile(tokens, 90):<7.0f}"
            latency = f"{percentile(lookups, 50):>8.1f}/{percentile(lookups, 99):<8.1f}"
        else:
            mine, sizes, latency = f"{'-':>8}", f"{'-':>14}", f"{'-':>17}"
        lines.append(f"{budget:>7} {mine} {_share(base('bm25', budget)):>7} {_share(base('dense', budget)):>7} "
                     f"{_share(base('rrf', budget)):>7}   {sizes}   {latency}")
    counts = Counter(q.category for _, q in questions)
    header = "".join(f" {f'{k} {v} ({counts[k]})':>18}" for k, v in CATEGORIES.items())
    lines += ["", f"recall by category{'':>3}{'budget':>7}{header}"]
    for name in ("memgate", "rrf"):
        for budget in budgets:
            cells = []
            for category in CATEGORIES:
                if name == "rrf":
                    flags = base("rrf", budget, lambda q, k=category: q.category == k)
                else:
                    run = runs.get(budget)
                    flags = [r.recalled for r in run.results if r.category == category] if run else []
                cells.append(f" {_share(flags):>18}")
            lines.append(f"{name:<21}{budget:>7}{''.join(cells)}")
    for budget, run in sorted(runs.items()):
        states = Counter(r.memory for r in run.results)
        lines.append(f"  (budget {budget}: {run.exchanges} exchanges imported in {run.import_s:.1f}s, observer "
                     f"{'done' if run.observer_settled else 'NOT settled'} after {run.observer_wait_s:.1f}s, "
                     f"questions asked in {run.ask_s:.1f}s; x-memory {dict(states)})")
        lines.append(f"  (budget {budget}: observer {run.observer}; the imported threads' observations by observer "
                     f"{dict(run.observations)})")
    return lines


def format_report(conversations: list[Conversation], budgets: Sequence[int], modes: Sequence[str],
                  baselines: dict[tuple[str, int, str, int], BaselineResult],
                  runs: dict[tuple[str, int], GatewayRun], wall_s: float, observer: str = "local",
                  observer_stats: Counter[str] | None = None) -> str:
    questions = [(c, q) for c in conversations for q in c.questions]
    left_out: Counter[str] = sum((c.left_out for c in conversations), Counter())
    lines = [
        f"LoCoMo memory benchmark: conversations {', '.join(c.stem for c in conversations)} "
        f"({sum(len(c.sessions) for c in conversations)} sessions, {sum(len(c.turns) for c in conversations)} turns, "
        f"{len(questions)} questions)",
        f"left out: {left_out['category 5']} category-5 questions, {left_out['evidence names no known turn']} "
        f"whose evidence names no known turn ({left_out['unknown evidence ids dropped']} unknown evidence ids dropped)",
        "recall: questions whose every evidence turn has >= 60% of its content words in the injected text; "
        "tokens: o200k tokens of memgate's block",
        "observer: " + ("local (MEMGATE_OBSERVER_MODEL=local)" if observer == "local" else
                        f"authors (MEMGATE_OBSERVER_MODEL={AUTHORS_OBSERVER_MODEL}, MEMGATE_REFLECTOR_MODEL=local; "
                        "the fake provider answers with the dataset authors' observations)"),
    ]
    if observer_stats:
        lines.append(f"authors' observer: {dict(observer_stats)}")
    for mode in modes:
        lines += ["", *format_mode(mode, budgets, questions, baselines,
                                   {b: r for (m, b), r in runs.items() if m == mode})]
    lines += ["", f"total wall time {wall_s:.1f}s"]
    return "\n".join(lines)


def write_json(path: Path, conversations: list[Conversation], budgets: Sequence[int],
               baselines: dict[tuple[str, int, str, int], BaselineResult], runs: dict[tuple[str, int], GatewayRun]) -> None:
    report: dict[str, Any] = {"budgets": list(budgets), "baselines": [], "memgate": []}
    for c in conversations:
        for q in c.questions:
            report["baselines"].append({
                "conversation": c.stem, "index": q.index, "question": q.question, "category": q.category,
                "evidence": q.evidence,
                **{f"{m}_{b}": asdict(baselines[(c.stem, q.index, m, b)]) for m in BASELINES for b in budgets},
            })
    for (mode, budget), run in sorted(runs.items()):
        report["memgate"].append({"mode": mode, "budget": budget, "observer": run.observer,
                                  "observations": dict(run.observations), "exchanges": run.exchanges,
                                  "observer_settled": run.observer_settled,
                                  "results": [asdict(r) for r in run.results]})
    path.write_text(json.dumps(report, indent=1))


# ---------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"LoCoMo folder (default {DEFAULT_DATA})")
    parser.add_argument("--budgets", default=",".join(map(str, DEFAULT_BUDGETS)),
                        help="injected-token budgets, each question asked at each (default 1000,2000,4000)")
    parser.add_argument("--modes", default=",".join(MODES), help="cross, same or both (default cross,same)")
    parser.add_argument("--conversations", default="", help="a subset of the files' stems, e.g. 26,30")
    parser.add_argument("--observer", choices=OBSERVERS, default="local",
                        help="local: the rule-based observer; authors: the LLM Observer (fake/observer) answered "
                             "with the dataset authors' observations (default local)")
    parser.add_argument("--json", type=Path, default=None, help="write every question's result (with the block) here")
    parser.add_argument("--baselines-only", action="store_true", help="only the baselines: no gateway")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the gateways' data and logs here")
    args = parser.parse_args(argv)
    budgets = [int(b) for b in args.budgets.split(",") if b.strip()]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not budgets or any(b <= 0 for b in budgets) or not modes or set(modes) - set(MODES):
        parser.error("--budgets takes positive integers, --modes cross and/or same")

    started = time.monotonic()
    conversations = load_conversations(args.data, [s.strip() for s in args.conversations.split(",") if s.strip()])
    baselines = run_baselines(conversations, budgets)
    runs: dict[tuple[str, int], GatewayRun] = {}
    authors = AuthorsObserver(conversations) if args.observer == "authors" else None
    if not args.baselines_only:
        from memgate_testing.fake_provider import FakeProvider

        with tempfile.TemporaryDirectory(prefix="memgate-locomo-") as tmp, FakeProvider(responder=authors) as fake:
            root = args.workdir or Path(tmp)
            for mode in modes:
                for run in run_gateway(mode, budgets, conversations, fake, root, observer=args.observer):
                    runs[(mode, run.budget)] = run
    wall_s = time.monotonic() - started
    print(format_report(conversations, budgets, modes, baselines, runs, wall_s, args.observer,
                        authors.stats if authors else None))
    if args.json:
        write_json(args.json, conversations, budgets, baselines, runs)
        progress(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
