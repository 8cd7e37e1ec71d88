"""The proxy, streamed calls: SSE (OpenAI, Anthropic, Groq) and NDJSON (Ollama native)."""

from __future__ import annotations

import json
import threading
import time
from decimal import Decimal

import anthropic
import pytest
import requests
from werkzeug import Response

from providers.tests.test_proxy import (  # noqa: F401 - fixtures are used by name
    MESSAGES,
    PROVIDER_KEY,
    _fresh_price_cache,
    _now,
    add_price,
    assert_no_ingest_key_forwarded,
    connect,
    finished_fixture,
    gpt_4o_mini_price,
    only_record,
    openai_client,
    received,
    records_after,
    sonnet_price,
    upstream_fixture,
)
from usage.models import RecordStatus

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def sse(*events: dict, done: bool = True, named: bool = False) -> list[bytes]:
    """One bytes chunk per SSE event, as a provider sends them."""
    chunks = []
    for event in events:
        head = f"event: {event['type']}\n" if named else ""
        chunks.append(f"{head}data: {json.dumps(event)}\n\n".encode())
    if done:
        chunks.append(b"data: [DONE]\n\n")
    return chunks


def streamed(chunks, *, mimetype="text/event-stream", gate=None, delay=0.0, then_fail=False):
    """A handler streaming `chunks`; `gate` (an Event) holds everything after the first chunk."""

    def handler(request):
        def body():
            for i, chunk in enumerate(chunks):
                if i == 1 and gate is not None:
                    assert gate.wait(10)
                if i and delay:
                    time.sleep(delay)
                yield chunk
            if then_fail:
                raise RuntimeError("provider fell over mid-stream")

        return Response(body(), mimetype=mimetype)

    return handler


def chat_chunk(delta: dict, *, finish=None, usage=None, choices=True, **extra) -> dict:
    chunk = {
        "id": "chatcmpl-stream-0001",
        "object": "chat.completion.chunk",
        "created": 1785600000,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}] if choices else [],
        **extra,
    }
    if usage is not None:
        chunk["usage"] = usage
    return chunk


OPENAI_USAGE = {
    "prompt_tokens": 1200,
    "completion_tokens": 300,
    "total_tokens": 1500,
    "prompt_tokens_details": {"cached_tokens": 1000},
}
OPENAI_STREAM = sse(
    chat_chunk({"role": "assistant", "content": "Hel"}),
    chat_chunk({"content": "lo"}),
    chat_chunk({}, finish="stop"),
    chat_chunk({}, choices=False, usage=OPENAI_USAGE),
)

ANTHROPIC_START = {
    "type": "message_start",
    "message": {
        "id": "msg_01Stream",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-6",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {
            "input_tokens": 412,
            "cache_creation_input_tokens": 2048,
            "cache_read_input_tokens": 8192,
            "output_tokens": 1,
        },
    },
}
ANTHROPIC_TEXT = [
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "!"}},
    {"type": "content_block_stop", "index": 0},
]
ANTHROPIC_END = [
    {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": 230},
    },
    {"type": "message_stop"},
]
ANTHROPIC_STREAM = sse(ANTHROPIC_START, *ANTHROPIC_TEXT, *ANTHROPIC_END, done=False, named=True)


def read_to_end(response: requests.Response) -> bytes:
    return b"".join(response.iter_content(chunk_size=1))


def read_until(response: requests.Response, marker: bytes) -> bytes:
    got = b""
    for byte in response.iter_content(chunk_size=1):
        got += byte
        if got.endswith(marker):
            return got
    raise AssertionError(f"stream ended before {marker!r}: {got!r}")


def post_stream(live_server, path: str, raw: str, body: dict, **headers) -> requests.Response:
    response = requests.post(
        f"{live_server.url}/proxy/{path}",
        headers={"Authorization": f"Bearer {raw}", **headers},
        json=body,
        stream=True,
        timeout=10,
    )
    assert response.status_code == 200, response.content
    return response


# --- complete streams -------------------------------------------------------------------------


def test_it_streams_openai_chat_and_asks_for_the_usage_chunk(live_server, upstream, finished):
    account, raw = connect("openai")
    gpt_4o_mini_price()
    upstream.expect_request("/v1/chat/completions").respond_with_handler(streamed(OPENAI_STREAM))
    client = openai_client(live_server, "openai", raw)

    chunks = list(
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    )

    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello"
    assert chunks[-1].usage.prompt_tokens == 1200
    (sent,) = received(upstream, "/v1/chat/completions")
    assert sent.get_json()["stream_options"] == {"include_usage": True}  # added by the proxy
    assert sent.headers["Authorization"] == f"Bearer {PROVIDER_KEY}"
    assert_no_ingest_key_forwarded(sent, raw)

    (record,) = records_after(
        finished, account
    )  # the SDK hangs up at [DONE], maybe before we finish
    assert (record.status, record.request_id) == (RecordStatus.OK, "chatcmpl-stream-0001")
    assert (record.input_tokens, record.cache_read_tokens, record.output_tokens) == (200, 1000, 300)
    # 200 × 0.00000015 + 1000 × 0.000000075 + 300 × 0.0000006 = 0.00003 + 0.000075 + 0.00018
    assert record.cost == Decimal("0.000285")


def test_it_passes_stream_bytes_on_unchanged_and_records_before_the_end(live_server, upstream):
    account, raw = connect("openai")
    gpt_4o_mini_price()
    upstream.expect_request("/v1/chat/completions").respond_with_handler(streamed(OPENAI_STREAM))

    response = post_stream(
        live_server,
        "openai/v1/chat/completions",
        raw,
        {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True},
    )

    assert response.headers["Content-Type"].startswith("text/event-stream")
    assert read_to_end(response) == b"".join(OPENAI_STREAM)
    # No polling: the record is committed before the response's last byte.
    record = only_record(account)
    assert (record.status, record.cost) == (RecordStatus.OK, Decimal("0.000285"))  # as above


def test_it_forwards_each_event_as_it_arrives(live_server, upstream, finished):
    account, raw = connect("openai")
    gate = threading.Event()
    upstream.expect_request("/v1/chat/completions").respond_with_handler(
        streamed(OPENAI_STREAM, gate=gate)
    )

    response = post_stream(
        live_server,
        "openai/v1/chat/completions",
        raw,
        {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True},
    )
    # The provider holds the rest back until we have the first event: a proxy that buffered
    # the stream would never hand it over, and this read would time out.
    first = read_until(response, b"\n\n")
    assert first == OPENAI_STREAM[0]
    assert not finished.wait(0.2)  # still streaming: the request is not over
    gate.set()
    assert first + read_to_end(response) == b"".join(OPENAI_STREAM)
    assert only_record(account).status == RecordStatus.OK


def test_it_streams_anthropic_messages_and_sums_start_and_delta_usage(
    live_server, upstream, finished
):
    account, raw = connect("anthropic")
    sonnet_price()
    upstream.expect_request("/v1/messages").respond_with_handler(streamed(ANTHROPIC_STREAM))
    client = anthropic.Anthropic(
        base_url=f"{live_server.url}/proxy/anthropic", api_key=raw, max_retries=0
    )

    events = list(
        client.messages.create(
            model="claude-sonnet-4-6", max_tokens=100, messages=MESSAGES, stream=True
        )
    )

    assert [e.type for e in events][0] == "message_start"
    assert events[-1].type == "message_stop"
    (sent,) = received(upstream, "/v1/messages")
    assert sent.headers["x-api-key"] == PROVIDER_KEY
    assert "stream_options" not in sent.get_json()  # Anthropic rejects unknown fields
    assert_no_ingest_key_forwarded(sent, raw)
    (record,) = records_after(finished, account)
    assert (record.status, record.request_id) == (RecordStatus.OK, "msg_01Stream")
    assert (record.input_tokens, record.cache_write_tokens, record.cache_read_tokens) == (
        412,
        2048,
        8192,
    )
    assert record.output_tokens == 230  # message_delta's cumulative count, not 1 + 230
    # 412 × 0.000003 + 2048 × 0.00000375 + 8192 × 0.0000003 + 230 × 0.000015
    # = 0.001236 + 0.00768 + 0.0024576 + 0.00345 = 0.0148236
    assert record.cost == Decimal("0.0148236")


def test_it_sends_a_default_anthropic_version(live_server, upstream):
    account, raw = connect("anthropic")
    upstream.expect_request("/v1/messages").respond_with_handler(streamed(ANTHROPIC_STREAM))

    response = requests.post(
        f"{live_server.url}/proxy/anthropic/v1/messages",
        headers={"x-api-key": raw},  # a bare client: no anthropic-version of its own
        json={"model": "claude-sonnet-4-6", "max_tokens": 5, "messages": MESSAGES, "stream": True},
        stream=True,
        timeout=10,
    )

    assert read_to_end(response) == b"".join(ANTHROPIC_STREAM)
    (sent,) = received(upstream, "/v1/messages")
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert only_record(account).status == RecordStatus.OK


def test_it_reads_groq_stream_usage_from_x_groq(live_server, upstream, finished):
    account, raw = connect("groq")
    add_price(
        "groq",
        "llama-3.1-8b-instant",
        input_per_token=Decimal("0.00000005"),
        output_per_token=Decimal("0.00000008"),
    )
    final = {
        "id": "chatcmpl-groq-1",
        "object": "chat.completion.chunk",
        "created": 1785600000,
        "model": "llama-3.1-8b-instant",
        "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}],
        "x_groq": {
            "id": "req_01groq",
            "usage": {"prompt_tokens": 84, "completion_tokens": 12, "total_tokens": 96},
        },
    }
    first = {**final, "choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}]}
    del first["x_groq"]
    upstream.expect_request("/openai/v1/chat/completions").respond_with_handler(
        streamed(sse(first, final))
    )
    client = openai_client(live_server, "groq", raw, suffix="openai/v1")  # Groq's own layout

    list(
        client.chat.completions.create(model="llama-3.1-8b-instant", messages=MESSAGES, stream=True)
    )

    (record,) = records_after(finished, account)
    assert (record.status, record.input_tokens, record.output_tokens) == (RecordStatus.OK, 84, 12)
    # 84 × 0.00000005 = 0.0000042; 12 × 0.00000008 = 0.00000096; sum 0.00000516
    assert record.cost == Decimal("0.00000516")


def test_it_streams_ollama_native_ndjson(live_server, upstream):
    account, raw = connect("ollama", api_key=None)
    lines = [
        {"model": "llama3.2", "message": {"role": "assistant", "content": "Hel"}, "done": False},
        {"model": "llama3.2", "message": {"role": "assistant", "content": "lo"}, "done": False},
        {
            "model": "llama3.2",
            "message": {"role": "assistant", "content": ""},
            "done": True,
            "done_reason": "stop",
            "total_duration": 1874560334,
            "prompt_eval_count": 26,
            "eval_count": 18,
        },
    ]
    chunks = [json.dumps(line).encode() + b"\n" for line in lines]
    upstream.expect_request("/api/chat").respond_with_handler(
        streamed(chunks, mimetype="application/x-ndjson")
    )

    # Ollama streams unless told not to: no "stream" in the body.
    response = post_stream(live_server, "ollama/api/chat", raw, {"model": "llama3.2"})

    assert response.headers["Content-Type"].startswith("application/x-ndjson")
    assert read_to_end(response) == b"".join(chunks)
    (sent,) = received(upstream, "/api/chat")
    assert "Authorization" not in sent.headers
    assert sent.get_json() == {"model": "llama3.2"}  # native API: body untouched
    record = only_record(account)
    assert (record.status, record.input_tokens, record.output_tokens) == (RecordStatus.OK, 26, 18)
    assert record.cost == Decimal(0)  # local models are free
    assert record.request_id.startswith("proxy-")


def test_it_streams_ollama_openai_compatible_chat(live_server, upstream, finished):
    account, raw = connect("ollama", api_key=None)
    usage = {"prompt_tokens": 26, "completion_tokens": 18, "total_tokens": 44}
    upstream.expect_request("/v1/chat/completions").respond_with_handler(
        streamed(
            sse(
                chat_chunk({"content": "Hi"}, model="llama3.2"),
                chat_chunk({}, choices=False, usage=usage, model="llama3.2"),
            )
        )
    )

    list(
        openai_client(live_server, "ollama", raw).chat.completions.create(
            model="llama3.2", messages=MESSAGES, stream=True
        )
    )

    assert received(upstream, "/v1/chat/completions")[0].get_json()["stream_options"] == {
        "include_usage": True
    }
    (record,) = records_after(finished, account)
    assert (record.status, record.input_tokens, record.output_tokens) == (RecordStatus.OK, 26, 18)
    assert (record.model, record.cost) == ("llama3.2", Decimal(0))


# --- streams cut short ------------------------------------------------------------------------


def test_it_records_an_incomplete_call_when_the_client_hangs_up(live_server, upstream, finished):
    account, raw = connect("anthropic")
    sonnet_price()
    endless = sse(ANTHROPIC_START, *ANTHROPIC_TEXT[:2], done=False, named=True)
    endless += [endless[-1]] * 200  # ~10 s of text deltas at 50 ms, never a message_delta
    upstream.expect_request("/v1/messages").respond_with_handler(streamed(endless, delay=0.05))

    response = post_stream(
        live_server,
        "anthropic/v1/messages",
        raw,
        {"model": "claude-sonnet-4-6", "max_tokens": 5, "messages": MESSAGES, "stream": True},
    )
    read_until(response, b"message_start")
    response.close()  # the client goes away mid-stream

    (record,) = records_after(finished, account)
    assert record.status == RecordStatus.INCOMPLETE
    assert (record.input_tokens, record.output_tokens) == (412, 1)  # what message_start said
    # What is known is priced: 412 × 0.000003 + 2048 × 0.00000375 + 8192 × 0.0000003
    # + 1 × 0.000015 = 0.001236 + 0.00768 + 0.0024576 + 0.000015 = 0.0113886
    assert record.cost == Decimal("0.0113886")
    time.sleep(0.3)
    assert len(records_after(finished, account)) == 1  # recorded once, not again on close()


def test_it_records_an_unpriced_incomplete_call_when_no_usage_arrived(
    live_server, upstream, finished
):
    account, raw = connect("openai")
    gpt_4o_mini_price()
    endless = OPENAI_STREAM[:1] * 200
    upstream.expect_request("/v1/chat/completions").respond_with_handler(
        streamed(endless, delay=0.05)
    )

    response = post_stream(
        live_server,
        "openai/v1/chat/completions",
        raw,
        {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True},
    )
    read_until(response, b"\n\n")
    response.close()

    (record,) = records_after(finished, account)
    assert record.status == RecordStatus.INCOMPLETE
    assert (record.input_tokens, record.output_tokens) == (0, 0)
    assert record.cost is None  # unknown, never a silent $0
    assert record.model == "gpt-4o-mini-2024-07-18"


@pytest.mark.parametrize(
    ("slug", "path", "chunks"),
    [
        ("openai", "/v1/chat/completions", OPENAI_STREAM[:2]),
        ("anthropic", "/v1/messages", ANTHROPIC_STREAM[:3]),
    ],
)
def test_it_records_an_incomplete_call_when_the_provider_breaks_off(
    live_server, upstream, slug, path, chunks
):
    account, raw = connect(slug)
    upstream.expect_request(path).respond_with_handler(streamed(chunks, then_fail=True))

    response = post_stream(
        live_server,
        f"{slug}{path}",
        raw,
        {"model": "m", "max_tokens": 5, "messages": MESSAGES, "stream": True},
    )
    try:
        read_to_end(response)
    except requests.RequestException:
        pass  # an aborted response is a fair way to learn of it too

    record = only_record(account)
    assert record.status == RecordStatus.INCOMPLETE
    assert record.cost is None  # no price row: unpriced either way, never $0


def test_it_records_an_incomplete_call_when_the_provider_stalls(
    live_server, upstream, finished, settings
):
    account, raw = connect("openai")
    settings.PROXY_READ_TIMEOUT = 0.3
    finished = threading.Event()

    def stalling(request):
        def body():
            yield OPENAI_STREAM[0]
            time.sleep(1.0)  # longer than the read timeout
            finished.set()
            yield OPENAI_STREAM[1]

        return Response(body(), mimetype="text/event-stream")

    upstream.expect_request("/v1/chat/completions").respond_with_handler(stalling)

    response = post_stream(
        live_server,
        "openai/v1/chat/completions",
        raw,
        {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True},
    )
    try:
        got = read_to_end(response)
    except requests.RequestException:
        got = b""
    assert OPENAI_STREAM[1] not in got

    (record,) = records_after(finished, account)
    assert (record.status, record.cost) == (RecordStatus.INCOMPLETE, None)
    assert record.model == "gpt-4o-mini-2024-07-18"
    assert finished.wait(5)  # let the fake provider finish before the next test uses it
