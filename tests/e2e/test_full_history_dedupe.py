"""Clients that resend their whole history get no duplicated context."""

from __future__ import annotations

import uuid

import openai
from helpers import memory_text

from memgate_testing.fake_provider import FakeProvider
from memgate_testing.gateway import GatewayProcess


def test_full_history_client_gets_each_message_once(gateway: GatewayProcess, provider: FakeProvider) -> None:
    client = openai.OpenAI(base_url=gateway.base_url, api_key=gateway.api_key, max_retries=0)
    headers = {"x-thread-id": f"full-{uuid.uuid4().hex[:6]}", "x-resource-id": "user-full"}
    history: list[dict] = [{"role": "system", "content": "You are terse."}]
    facts = [f"Note {i}: the locker code is {uuid.uuid4().hex[:6]}." for i in range(5)]
    skipped = []
    for fact in facts:
        history.append({"role": "user", "content": fact})
        raw = client.chat.completions.with_raw_response.create(model="fake/gpt-test", messages=history,
                                                               extra_headers=headers)
        history.append({"role": "assistant", "content": raw.parse().choices[0].message.content})
        skipped.append(int(raw.headers["x-memory-skipped-messages"]))
    upstream = provider.requests[-1]["body"]["messages"]
    blocks = [m["content"] for m in upstream if m["role"] == "system" and "<memgate_memory>" in m["content"]]
    # Message lines only: an observation of a fact may join the block if the observer is quick.
    assert not any(f"user: {fact}" in block for block in blocks for fact in facts), "memory repeated what the client sent"
    assert upstream[len(blocks):] == history[:-1]  # the client's own messages, untouched
    assert skipped == [0, 2, 4, 6, 8]  # every earlier message was recognised as the client's own

    # A client that sends only its newest message still gets the history from memory.
    client.chat.completions.create(model="fake/gpt-test", extra_headers=headers,
                                   messages=[{"role": "user", "content": "Which codes did I give?"}])
    only_new = memory_text(provider.requests[-1])
    assert all(only_new.count(f"user: {fact}") == 1 for fact in facts)


def test_a_resent_message_with_a_nul_is_recognised(gateway: GatewayProcess, provider: FakeProvider) -> None:
    # Memory keeps U+FFFD for NUL; the client resends the original: still the same message.
    client = openai.OpenAI(base_url=gateway.base_url, api_key=gateway.api_key, max_retries=0)
    headers = {"x-thread-id": f"full-nul-{uuid.uuid4().hex[:6]}", "x-resource-id": "user-full"}
    history: list[dict] = [{"role": "user", "content": "my pin is 12\u000034"}]
    answer = client.chat.completions.create(model="fake/gpt-test", messages=history, extra_headers=headers)
    history += [{"role": "assistant", "content": answer.choices[0].message.content},
                {"role": "user", "content": "and now?"}]
    raw = client.chat.completions.with_raw_response.create(model="fake/gpt-test", messages=history,
                                                           extra_headers=headers)
    assert raw.headers["x-memory-skipped-messages"] == "2"
    blocks = [m["content"] for m in provider.requests[-1]["body"]["messages"]
              if m["role"] == "system" and "<memgate_memory>" in m["content"]]
    assert all("user: my pin is" not in block for block in blocks)  # the message line, not an observation
