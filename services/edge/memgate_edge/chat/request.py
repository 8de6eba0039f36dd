"""Validating a chat request: the body fields memgate needs, and the memory headers.

The body is kept as a dict so every field memgate does not own reaches the provider untouched.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from memgate_core.context import message_fingerprint
from memgate_core.errors import InvalidRequest
from memgate_core.ids import validate_client_id
from memgate_edge.body import decode_body

THREAD_HEADER = "x-thread-id"
RESOURCE_HEADER = "x-resource-id"
# What one request may write to memory (a chat's new turn, an import): messages, and bytes
# of their contents together (UTF-8).
MAX_MESSAGES = 1000
MAX_CONTENT_BYTES = 1024 * 1024
MAX_MODEL_CHARS = 256
QUERY_CHARS = 4000  # of the newest user message, for recall (and of a memory search's query)
MODEL_PATTERN = re.compile(rf"[\x21-\x7e](?:[\x20-\x7e]{{0,{MAX_MODEL_CHARS - 2}}}[\x21-\x7e])?")
BUDGET_HEADER = "x-memory-budget-tokens"  # this request's memory budget instead of the gateway's
MAX_BUDGET_TOKENS = 100_000


class MemoryScope(msgspec.Struct, frozen=True):
    thread_id: str
    resource_id: str
    budget_tokens: int | None = None  # None: the gateway's MEMGATE_CONTEXT_BUDGET_TOKENS


class ChatRequest(msgspec.Struct):
    body: dict[str, Any]
    model: str
    stream: bool
    memory: MemoryScope | None
    # With memory on: this turn's messages (`new_turn`), each with the text memory keeps of
    # it (`remembered_text`), worked out once for the size check and for storing.
    turn: list[tuple[dict[str, Any], str]] = []
    # The client's own body when it came by another API (Anthropic's Messages: `body` is
    # then its translation, which memory reads and providers without that API get).
    native: dict[str, Any] | None = None

    @property
    def messages(self) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = self.body["messages"]  # (checked by `chat_request`)
        return messages


def parse_chat_request(raw: bytes, headers: dict[str, str]) -> ChatRequest:
    return chat_request(decode_object(raw), headers)


def decode_object(raw: bytes) -> dict[str, Any]:
    """A request body that must be a JSON object."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRequest(f"Request body is not valid UTF-8 (byte {exc.start}).", code="invalid_encoding") from None
    body: Any = decode_body(raw)
    if not isinstance(body, dict):
        raise InvalidRequest("Request body must be a JSON object.", code="invalid_json")
    return body


def chat_request(body: dict[str, Any], headers: dict[str, str]) -> ChatRequest:
    """A chat completion body checked, with its memory scope and turn."""
    model = body.get("model")
    if model is None:
        raise InvalidRequest("Missing required parameter: 'model'.", code="missing_required_parameter", param="model")
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequest("'model' must be a non-empty string.", code="invalid_type", param="model")
    if not MODEL_PATTERN.fullmatch(model):
        # It is stored with usage, logged and sent back in x-memgate-route: printable ASCII only.
        raise InvalidRequest(f"'model' must be 1-{MAX_MODEL_CHARS} printable ASCII characters.",
                             code="invalid_value", param="model")

    messages = body.get("messages")
    if messages is None:
        raise InvalidRequest("Missing required parameter: 'messages'.", code="missing_required_parameter", param="messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("'messages' must be a non-empty array.", code="invalid_type", param="messages")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise InvalidRequest(f"messages[{i}] must be an object with a string 'role'.",
                                 code="invalid_type", param=f"messages[{i}]")
        content = message.get("content")
        if content is not None and not isinstance(content, (str, list)):
            raise InvalidRequest(f"messages[{i}].content must be a string or an array of content parts.",
                                 code="invalid_type", param=f"messages[{i}].content")
        calls = message.get("tool_calls")
        if calls is not None and not (isinstance(calls, list) and all(isinstance(c, dict) for c in calls)):
            raise InvalidRequest(f"messages[{i}].tool_calls must be an array of objects.",
                                 code="invalid_type", param=f"messages[{i}].tool_calls")

    stream = body.get("stream", False)
    if stream is not None and not isinstance(stream, bool):
        raise InvalidRequest("'stream' must be a boolean.", code="invalid_type", param="stream")

    memory = parse_memory_scope(headers)
    turn = [(m, remembered_text(m)) for m in new_turn(messages)] if memory is not None else []
    _check_turn_size(turn)
    return ChatRequest(body=body, model=model, stream=bool(stream), memory=memory, turn=turn)


def _check_turn_size(turn: list[tuple[dict[str, Any], str]]) -> None:
    """The turn memory would store stays within what one request may write."""
    if len(turn) > MAX_MESSAGES:
        raise InvalidRequest(f"With memory on, one request may add at most {MAX_MESSAGES} messages to the thread "
                             f"(this one adds {len(turn)}: the messages after the last assistant message).",
                             code="too_many_messages", param="messages")
    size = sum(len(text.encode("utf-8", "replace")) for _, text in turn)
    if size > MAX_CONTENT_BYTES:
        raise InvalidRequest(f"With memory on, one request may add at most {MAX_CONTENT_BYTES} bytes of message "
                             f"content to the thread (this one adds {size}).", code="content_too_large",
                             param="messages")


def parse_memory_scope(headers: dict[str, str]) -> MemoryScope | None:
    thread_id = headers.get(THREAD_HEADER)
    resource_id = headers.get(RESOURCE_HEADER)
    if thread_id is None and resource_id is None:
        return None
    if thread_id is None:
        # A resource alone has no thread to remember in; say so rather than silently ignoring it.
        raise InvalidRequest("x-resource-id was sent without x-thread-id; memory needs both headers.",
                             code="missing_thread_id", param=THREAD_HEADER)
    if resource_id is None:
        raise InvalidRequest("x-thread-id requires x-resource-id (the user or entity the thread belongs to).",
                             code="missing_resource_id", param=RESOURCE_HEADER)
    return MemoryScope(validate_client_id(thread_id, THREAD_HEADER), validate_client_id(resource_id, RESOURCE_HEADER),
                       _budget(headers.get(BUDGET_HEADER)))


def _budget(value: str | None) -> int | None:
    if value is None:
        return None
    digits = value.strip()
    # (ASCII digits, few: "²" is a digit to isdigit but not to int(), and 5,000 digits pass
    # isdigit but not int())
    if not (digits.isascii() and digits.isdigit() and len(digits) <= 9) or not 1 <= int(digits) <= MAX_BUDGET_TOKENS:
        raise InvalidRequest(f"{BUDGET_HEADER} must be a whole number of tokens from 1 to {MAX_BUDGET_TOKENS}.",
                             code="invalid_memory_budget", param=BUDGET_HEADER)
    return int(value)


def text_of(content: Any) -> str:
    """The text of a message's content (a string or a list of content parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
                parts.append(part["text"])
            elif isinstance(part, dict) and part.get("type") in ("image_url", "input_audio", "file"):
                parts.append(f"[{part['type']}]")
        return "\n".join(parts)
    return ""


def remembered_text(message: dict[str, Any]) -> str:
    """A message as memgate stores it: its text, plus its tool calls when it made any."""
    text = text_of(message.get("content"))
    calls = [(c["function"].get("name", "?"), c["function"].get("arguments", ""))
             for c in message.get("tool_calls") or []
             if isinstance(c, dict) and isinstance(c.get("function"), dict)]
    if calls:
        text = "\n".join(filter(None, [text, describe_tool_calls(calls)]))
    return storable(text)


def storable(text: str) -> str:
    """Text as memgate can keep it: Postgres text cannot hold NUL, which JSON (and so a
    client or a provider) may well send; it becomes U+FFFD (the request itself goes on untouched)."""
    return text.replace("\x00", "\ufffd")


def describe_tool_calls(calls: list[tuple[str, str]]) -> str:
    """How an assistant's tool calls are remembered: '[called get_weather({"city": "Oslo"})]'."""
    return "\n".join(f"[called {name}({arguments})]" for name, arguments in calls)


def client_fingerprints(messages: list[dict[str, Any]]) -> list[str]:
    """Fingerprints of the history a client resent (everything before this turn).

    The new turn itself is left out: a short new message ("yes") must not hide an equal
    earlier one from memory.
    """
    history = messages[: _turn_start(messages)]
    return [message_fingerprint(m["role"], remembered_text(m)) for m in history
            if m.get("role") in ("user", "assistant", "tool")]


def _turn_start(messages: list[dict[str, Any]]) -> int:
    start = 0
    for i, message in enumerate(messages):
        if message.get("role") == "assistant":
            start = i + 1
    return start


def latest_user_text(messages: list[dict[str, Any]]) -> str:
    """What recall looks for: the newest user message, its last QUERY_CHARS characters (the
    embedding reads about a thousand anyway, and a long paste usually ends with the ask)."""
    for message in reversed(messages):
        if message.get("role") == "user":
            return text_of(message.get("content"))[-QUERY_CHARS:]
    return ""


def new_turn(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages of this turn: everything after the last assistant message, minus system ones."""
    return [m for m in messages[_turn_start(messages):] if m.get("role") in ("user", "tool")]
