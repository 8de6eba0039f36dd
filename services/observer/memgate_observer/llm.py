"""The LLM Observer and Reflector: the prompts in prompt.py, sent through the provider layer
(each call a traced `chat` span: `memgate_observer.calls`)."""

from __future__ import annotations

import logging

from memgate_observer.base import ObservationDraft, ObserverFailed, ObserverInput, ObserverResult, ReflectionRejected
from memgate_observer.calls import ask
from memgate_observer.local import TITLE_CHARS, local_title
from memgate_observer.prompt import (
    MalformedOutput,
    build_observer_messages,
    build_reflector_messages,
    build_title_messages,
    observer_retry_messages,
    parse_observer_output,
    parse_reflector_output,
)
from memgate_providers import ProviderClient
from memgate_store import Observation

log = logging.getLogger("memgate.observer.llm")


class LLMObserver:
    def __init__(self, client: ProviderClient, model: str) -> None:
        self.client = client
        self.model = model
        self.name = f"llm:{model}"

    async def observe(self, batch: ObserverInput) -> ObserverResult:
        """Provider errors propagate (the delivery is retried later); malformed output is
        retried once, with the reason, then raised as ObserverFailed."""
        messages = build_observer_messages(batch)
        answer = await ask(self.client, self.model, messages, agent="observer", thread_id=batch.thread_id,
                           temperature=0)
        try:
            return parse_observer_output(answer, batch)
        except MalformedOutput as exc:
            log.warning("observer output malformed (thread %s): %s; retrying once", batch.thread_id, exc)
            retry = observer_retry_messages(messages, answer, str(exc))
        answer = await ask(self.client, self.model, retry, agent="observer", thread_id=batch.thread_id, temperature=0)
        try:
            return parse_observer_output(answer, batch)
        except MalformedOutput as exc:
            raise ObserverFailed(f"malformed observer output (after one retry): {exc}", answer) from exc


    async def title(self, opening: str) -> str:
        """The model's title; the local one when the model gives none it can use (or fails:
        a title is not worth redelivering the exchanges for)."""
        try:
            answer = await ask(self.client, self.model, build_title_messages(opening), agent="title", temperature=0,
                               max_tokens=24)
        except Exception as exc:
            log.info("title of a thread not made by %s (%s): using the local one", self.model, exc)
            return local_title(opening)
        title = " ".join(answer.strip().strip("\"'*#").split())
        return title[:TITLE_CHARS] if title and "\n" not in answer.strip() else local_title(opening)


class LLMReflector:
    def __init__(self, client: ProviderClient, model: str) -> None:
        self.client = client
        self.model = model
        self.name = f"llm:{model}"

    async def reflect(self, observations: list[Observation], *, target_tokens: int, attempt: int,
                      problem: str | None = None) -> tuple[list[ObservationDraft], str | None]:
        messages = build_reflector_messages(observations, target_tokens=target_tokens, attempt=attempt,
                                            problem=problem)
        answer = await ask(self.client, self.model, messages, agent="reflector",
                           thread_id=observations[0].thread_id if observations else None, temperature=0)
        try:
            return parse_reflector_output(answer, observations), answer
        except MalformedOutput as exc:
            raise ReflectionRejected(f"malformed reflector output: {exc}", answer) from exc
