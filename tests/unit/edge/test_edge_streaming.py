"""SSE splitting and the stream collector."""

from __future__ import annotations

import msgspec

from memgate_core.events import Usage
from memgate_edge.chat.streaming import StreamCollector, _split_events, data_of


def test_split_complete_events_and_keep_the_rest() -> None:
    events, rest = _split_events(b"data: 1\n\ndata: 2\n\ndata: 3")
    assert events == [b"data: 1\n\n", b"data: 2\n\n"]
    assert rest == b"data: 3"


def test_split_normalizes_crlf() -> None:
    events, rest = _split_events(b"data: a\r\n\r\nevent: x\r\ndata: b\r\n\r\ndata: c\r\n")
    assert events == [b"data: a\n\n", b"event: x\ndata: b\n\n"]
    assert rest == b"data: c\n"


def test_split_with_nothing_complete() -> None:
    assert _split_events(b"") == ([], b"")
    assert _split_events(b"data: {\"partial") == ([], b"data: {\"partial")


def test_split_across_chunks_including_a_split_crlf() -> None:
    stream = b'data: {"a":1}\r\n\r\ndata: {"b":2}\r\n\r\ndata: [DONE]\r\n\r\n'
    for cut in range(1, len(stream)):
        collected, buffer = [], b""
        for piece in (stream[:cut], stream[cut:]):
            events, buffer = _split_events(buffer + piece)
            collected += events
        assert collected == [b'data: {"a":1}\n\n', b'data: {"b":2}\n\n', b"data: [DONE]\n\n"], cut
        assert buffer == b""


def testdata_of() -> None:
    assert data_of(b'data: {"x": 1}\n\n') == b'{"x": 1}'
    assert data_of(b"data:[DONE]\n\n") == b"[DONE]"
    assert data_of(b"event: message\nid: 7\ndata: a\ndata: b\n\n") == b"a\nb"
    assert data_of(b": keep-alive comment\n\n") is None
    assert data_of(b"event: ping\n\n") is None


def _chunk(content: str | None = None, *, index: int = 0, usage: dict | None = None) -> bytes:
    delta = {} if content is None else {"content": content}
    choices = [] if usage is not None and content is None else [{"index": index, "delta": delta}]
    data: dict = {"object": "chat.completion.chunk", "choices": choices}
    if usage is not None:
        data["usage"] = usage
    return msgspec.json.encode(data)


def test_collector_joins_delta_content_and_keeps_usage() -> None:
    collector = StreamCollector()
    collector.feed(msgspec.json.encode({"choices": [{"index": 0, "delta": {"role": "assistant"}}]}))
    collector.feed(_chunk("Hel"))
    collector.feed(_chunk("lo"))
    collector.feed(_chunk(" other choice", index=1))
    collector.feed(_chunk("!"))
    collector.feed(_chunk(usage={"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}))
    assert collector.text == "Hello!"
    assert collector.usage == Usage(9, 3)


def test_collector_keeps_earlier_usage_when_later_chunks_have_none() -> None:
    collector = StreamCollector()
    collector.feed(_chunk(usage={"prompt_tokens": 1, "completion_tokens": 2}))
    collector.feed(_chunk("x"))
    collector.feed(msgspec.json.encode({"choices": [], "usage": None}))
    assert collector.usage == Usage(1, 2)
    assert collector.text == "x"


def test_collector_ignores_bad_payloads() -> None:
    collector = StreamCollector()
    for payload in (b"[DONE]", b"{not json", b"[1, 2]", b'"str"', b'{"choices": null}',
                    b'{"choices": ["x", {"delta": "nope"}, {"delta": {"content": 5}}]}'):
        collector.feed(payload)
    collector.feed(_chunk("ok"))
    assert collector.text == "ok"
    assert collector.usage is None


def test_collector_treats_missing_index_as_first_choice() -> None:
    collector = StreamCollector()
    collector.feed(b'{"choices": [{"delta": {"content": "a"}}]}')
    assert collector.text == "a"


def test_collector_survives_non_numeric_usage() -> None:
    collector = StreamCollector()
    collector.feed(b'{"choices": [], "usage": {"prompt_tokens": "n/a", "completion_tokens": 1}}')
    assert collector.usage is not None  # the odd value counts as 0, the rest is kept
    assert (collector.usage.prompt_tokens, collector.usage.completion_tokens) == (0, 1)
