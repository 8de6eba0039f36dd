"""The official `openai` Node SDK (tests/clients/node/chat.mjs) against `memgate up`.

`make clients-node` (a prerequisite of `make test`) installs the pinned SDK; without node these
tests skip and say why, and without the SDK too, except under CI=true, where they fail.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from helpers import assert_memory_reached_provider, unavailable

from memgate_testing.fake_provider import FakeProvider
from memgate_testing.gateway import GatewayProcess

CLIENT_DIR = Path(__file__).resolve().parents[1] / "clients" / "node"
SCRIPT = CLIENT_DIR / "chat.mjs"
QUESTION = "What is my name?"
NODE = shutil.which("node")


def _missing() -> str | None:
    if NODE is None:
        return "node is not on PATH: install Node.js to run the openai Node SDK client tests"
    if not (CLIENT_DIR / "node_modules" / "openai" / "package.json").exists():
        return f"the openai Node SDK is not installed in {CLIENT_DIR}: run `make clients-node`"
    return None


# Decided before any fixture runs, so a skip does not start a gateway first.
# Node.js is the machine's; the SDK is installed by `make test` (so under CI=true it must be there).
pytestmark = unavailable(_missing(), ours=NODE is not None)


def _pinned_version() -> str:
    return json.loads((CLIENT_DIR / "package.json").read_text())["dependencies"]["openai"]


def run_chat(gateway: GatewayProcess, memory: dict[str, str], message: str, *, stream: bool) -> dict[str, Any]:
    """One chat completion through the Node SDK; arguments by argv, the key by env (as a user would)."""
    argv = [str(NODE), str(SCRIPT), "--base-url", gateway.base_url, "--model", "fake/gpt-test",
            "--thread", memory["x-thread-id"], "--resource", memory["x-resource-id"], "--message", message]
    if stream:
        argv.append("--stream")
    env = {**os.environ, "MEMGATE_API_KEY": gateway.api_key}
    done = subprocess.run(argv, env=env, cwd=CLIENT_DIR, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, f"chat.mjs failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["sdk_version"] == _pinned_version()
    return result


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_node_sdk_remembers(gateway: GatewayProcess, provider: FakeProvider, stream: bool) -> None:
    tag = uuid.uuid4().hex[:10]
    memory = {"x-thread-id": f"node-{tag}", "x-resource-id": f"user-{tag}"}
    statement = "My name is Fenna and I like sailing."

    first = run_chat(gateway, memory, statement, stream=stream)
    assert first["content"] == f"fake answer to: {statement}"
    second = run_chat(gateway, memory, QUESTION, stream=stream)
    assert second["content"] == "Your name is Fenna."
    assert second["finish_reason"] == "stop"
    if stream:
        # role chunk + one chunk per word + the finish chunk: relayed as a stream, not one blob
        assert second["content_chunks"] == len("Your name is Fenna.".split())
        assert second["chunks"] >= second["content_chunks"] + 1

    requests = provider.requests
    assert_memory_reached_provider(requests, statement, QUESTION, stream)
    assert requests[1]["body"]["model"] == "gpt-test"
