"""Tool calling through the official `openai` Python SDK on a memory thread.

Step 1 sends tools: the fake provider answers with a tool call, which must reach the SDK intact
(id, function name, arguments), streamed or not. Step 2 sends the client's whole history
[user, assistant(tool_calls), tool]: the provider must receive memgate's memory block first and
then exactly that history, tool-call ids intact. Step 3 checks the thread still remembers.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import openai
import pytest

from memgate_testing.fake_provider import FakeProvider
from memgate_testing.gateway import GatewayProcess

MODEL = "fake/gpt-test"
TOOLS: list[dict[str, Any]] = [{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}]


def _tool_call(client: openai.OpenAI, memory: dict[str, str], messages: list[dict[str, Any]],
               stream: bool) -> dict[str, Any]:
    """Step 1: returns the assistant message (as it goes back into the history) the SDK assembled."""
    if not stream:
        completion = client.chat.completions.create(model=MODEL, messages=messages, tools=TOOLS,
                                                    extra_headers=memory)
        choice = completion.choices[0]
        assert choice.finish_reason == "tool_calls"
        assert choice.message.content is None
        assert choice.message.tool_calls is not None and len(choice.message.tool_calls) == 1
        call = choice.message.tool_calls[0]
        return {"role": "assistant", "content": None, "tool_calls": [{
            "id": call.id, "type": call.type,
            "function": {"name": call.function.name, "arguments": call.function.arguments},
        }]}
    calls: dict[int, dict[str, Any]] = {}
    finish, content = None, ""
    for chunk in client.chat.completions.create(model=MODEL, messages=messages, tools=TOOLS, stream=True,
                                                extra_headers=memory):
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            content += choice.delta.content or ""
            for delta in choice.delta.tool_calls or ():
                call = calls.setdefault(delta.index, {"id": None, "type": None,
                                                      "function": {"name": "", "arguments": ""}})
                call["id"] = delta.id or call["id"]
                call["type"] = delta.type or call["type"]
                if delta.function is not None:
                    call["function"]["name"] += delta.function.name or ""
                    call["function"]["arguments"] += delta.function.arguments or ""
    assert finish == "tool_calls"
    assert content == ""
    assert list(calls) == [0]
    return {"role": "assistant", "content": None, "tool_calls": [calls[0]]}


def _answer(client: openai.OpenAI, memory: dict[str, str], messages: list[dict[str, Any]], stream: bool,
            **kw: Any) -> str:
    if not stream:
        completion = client.chat.completions.create(model=MODEL, messages=messages, extra_headers=memory, **kw)
        assert completion.choices[0].finish_reason == "stop"
        return completion.choices[0].message.content or ""
    chunks = client.chat.completions.create(model=MODEL, messages=messages, stream=True, extra_headers=memory,
                                            **kw)
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_tool_conversation_on_a_memory_thread(gateway: GatewayProcess, provider: FakeProvider,
                                              stream: bool) -> None:
    client = openai.OpenAI(base_url=gateway.base_url, api_key=gateway.api_key, max_retries=0)
    tag = uuid.uuid4().hex[:10]
    memory = {"x-thread-id": f"tools-{tag}", "x-resource-id": f"user-{tag}"}
    intro = "My name is Lorcan and I cycle to work."
    question = "What is the weather in Paris?"
    user = {"role": "user", "content": question}

    # Step 0: a plain turn the client will not resend: memory must bring it back.
    assert _answer(client, memory, [{"role": "user", "content": intro}], stream)

    # Step 1: tools offered -> a tool call, intact in the SDK.
    assistant = _tool_call(client, memory, [user], stream)
    call = assistant["tool_calls"][0]
    assert call["id"].startswith("call_") and len(call["id"]) > len("call_")
    assert call["type"] == "function"
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {}  # the fake's arguments, unchanged
    step1 = provider.requests[1]["body"]
    assert step1["messages"][0]["role"] == "system" and intro in step1["messages"][0]["content"]
    assert step1["messages"][1:] == [user]
    assert step1["tools"] == TOOLS

    # Step 2: the client resends the tool conversation, with the tool's result.
    tool = {"role": "tool", "tool_call_id": call["id"], "content": json.dumps({"city": "Paris", "temp_c": 21})}
    history = [user, assistant, tool]
    assert _answer(client, memory, history, stream, tools=TOOLS) == f"fake answer to: {question}"
    step2 = provider.requests[2]["body"]
    system, *rest = step2["messages"]
    assert system["role"] == "system" and system["content"].startswith("<memgate_memory>")  # memory first
    assert intro in system["content"]  # what the client did not resend
    assert f"user: {question}" not in system["content"]  # what it did resend is not repeated
    assert rest == history  # in order, tool_calls and tool_call_id intact
    assert [m["role"] for m in rest] == ["user", "assistant", "tool"]
    assert rest[1]["tool_calls"][0]["id"] == rest[2]["tool_call_id"] == call["id"]
    assert step2["tools"] == TOOLS

    # Step 3: a new question alone; the thread remembers the tool conversation's user.
    assert _answer(client, memory, [{"role": "user", "content": "What is my name?"}], stream) == "Your name is Lorcan."
    step3 = provider.requests[3]["body"]["messages"]
    assert step3[0]["role"] == "system" and question in step3[0]["content"]
    assert "[called get_weather(" in step3[0]["content"]  # the tool call itself is remembered
    assert len(provider.requests) == 4


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_memory_remembers_the_tool_call(gateway: GatewayProcess, provider: FakeProvider, stream: bool) -> None:
    client = openai.OpenAI(base_url=gateway.base_url, api_key=gateway.api_key, max_retries=0)
    tag = uuid.uuid4().hex[:10]
    memory = {"x-thread-id": f"tools-mem-{tag}", "x-resource-id": f"user-{tag}"}
    _tool_call(client, memory, [{"role": "user", "content": "What is the weather in Oslo?"}], stream)
    _answer(client, memory, [{"role": "user", "content": "Thanks."}], stream)
    block = provider.requests[1]["body"]["messages"][0]["content"]
    assert block.startswith("<memgate_memory>")
    assert "get_weather" in block
