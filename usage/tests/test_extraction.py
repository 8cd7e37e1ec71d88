"""Per-request usage extraction. Bodies are the examples in shared/reference/provider-apis.md."""

from __future__ import annotations

import json
import random
from decimal import Decimal

import pytest

from usage.extraction import RequestUsage, StreamUsageTracker, add_include_usage, extract_usage


def load(text: str) -> dict:
    # Callers parse provider JSON with parse_float=Decimal; do the same here.
    return json.loads(text, parse_float=Decimal)


# Reference §6.1 (OpenAI Chat Completions).
OPENAI_CHAT = """{
  "id": "chatcmpl-BxYz123", "object": "chat.completion", "created": 1785600000,
  "model": "gpt-4.1-2025-04-14",
  "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi!", "refusal": null,
    "annotations": []}, "logprobs": null, "finish_reason": "stop"}],
  "usage": {"prompt_tokens": 2140, "completion_tokens": 96, "total_tokens": 2236,
    "prompt_tokens_details": {"cached_tokens": 1920, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
      "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}},
  "service_tier": "default", "system_fingerprint": "fp_9a8b7c6d5e"
}"""

# Reference §6.2 (OpenAI Responses API).
OPENAI_RESPONSE = """{"id": "resp_68a1b2c3", "object": "response", "created_at": 1785600000,
 "status": "completed", "model": "o4-mini-2025-04-16", "service_tier": "default",
 "usage": {"input_tokens": 1324, "input_tokens_details": {"cached_tokens": 1024,
   "cache_write_tokens": 0}, "output_tokens": 812,
   "output_tokens_details": {"reasoning_tokens": 640}, "total_tokens": 2136}}"""

# Reference §7 (Anthropic Messages).
ANTHROPIC_MESSAGE = """{
  "id": "msg_01XyZaBcDeFgHiJkLmNoPq", "type": "message", "role": "assistant",
  "model": "claude-sonnet-4-5-20250929", "content": [{"type": "text", "text": "Hello!"}],
  "stop_reason": "end_turn", "stop_sequence": null,
  "usage": {"input_tokens": 412, "cache_creation_input_tokens": 2048,
    "cache_read_input_tokens": 8192,
    "cache_creation": {"ephemeral_5m_input_tokens": 2048, "ephemeral_1h_input_tokens": 0},
    "output_tokens": 230, "output_tokens_details": {"thinking_tokens": 0},
    "server_tool_use": {"web_search_requests": 1, "web_fetch_requests": 0},
    "service_tier": "standard", "inference_geo": "global"}
}"""

# Reference §4 (Groq, non-streaming).
GROQ_CHAT = """{
  "id": "chatcmpl-4f2b1c9e-0a7d-4e55-9c1f-2b8e6d3a7c10", "object": "chat.completion",
  "created": 1785600000, "model": "openai/gpt-oss-120b",
  "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello!"},
    "logprobs": null, "finish_reason": "stop"}],
  "usage": {"queue_time": 0.021734, "prompt_tokens": 84, "prompt_time": 0.004512,
    "completion_tokens": 12, "completion_time": 0.025100, "total_tokens": 96,
    "total_time": 0.029612, "prompt_tokens_details": {"cached_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 4}},
  "usage_breakdown": null, "system_fingerprint": "fp_a1b2c3d4e5", "service_tier": "on_demand",
  "x_groq": {"id": "req_01k2f3g4h5j6k7m8n9p0q1r2s3"}
}"""

# Reference §5.1 (Perplexity Sonar, low context).
PERPLEXITY_CHAT = """{
  "id": "3c1e8b0a-6f6d-4d4e-9a55-1f0c2b7d9e11", "model": "sonar", "created": 1785600000,
  "object": "chat.completion",
  "choices": [{"index": 0, "finish_reason": "stop",
    "message": {"role": "assistant", "content": "Paris is the capital of France [1]."}}],
  "citations": ["https://en.wikipedia.org/wiki/Paris"],
  "usage": {"prompt_tokens": 9, "completion_tokens": 11, "total_tokens": 20,
    "search_context_size": "low",
    "cost": {"input_tokens_cost": 0.000009, "output_tokens_cost": 0.000011,
      "request_cost": 0.005, "total_cost": 0.00502}}
}"""

# Reference §8 (Ollama /api/chat final object).
OLLAMA_CHAT = """{
  "model": "llama3.2", "created_at": "2026-08-21T09:14:07.414671Z",
  "message": {"role": "assistant", "content": "Hello! How can I help?"},
  "done": true, "done_reason": "stop", "total_duration": 1874560334,
  "load_duration": 101397084, "prompt_eval_count": 26, "prompt_eval_duration": 130747910,
  "eval_count": 18, "eval_duration": 1524797090
}"""


def test_it_reads_openai_chat_with_cached_input_excluded_from_input_tokens():
    usage = extract_usage("openai", load(OPENAI_CHAT))
    assert usage.found
    assert (usage.model, usage.response_id) == ("gpt-4.1-2025-04-14", "chatcmpl-BxYz123")
    assert usage.input_tokens == 220  # 2,140 prompt includes 1,920 cached
    assert usage.cache_read_tokens == 1920
    assert (usage.output_tokens, usage.reasoning_tokens, usage.request_count) == (96, 0, 1)


def test_it_keeps_reasoning_inside_output_without_adding_it_twice():
    body = load(OPENAI_CHAT)
    body["usage"]["completion_tokens"] = 200
    body["usage"]["completion_tokens_details"]["reasoning_tokens"] = 150
    usage = extract_usage("openai", body)
    assert (usage.output_tokens, usage.reasoning_tokens) == (200, 150)


def test_it_accepts_a_bare_usage_object():
    whole = extract_usage("openai", load(OPENAI_CHAT))
    bare = extract_usage("openai", load(OPENAI_CHAT)["usage"])
    assert bare.found and bare.model == ""
    assert (bare.input_tokens, bare.cache_read_tokens, bare.output_tokens) == (220, 1920, 96)
    assert whole.input_tokens == bare.input_tokens


def test_it_subtracts_openai_cache_writes_from_prompt_tokens():
    usage = extract_usage(
        "openai",
        {
            "prompt_tokens": 1000,
            "completion_tokens": 5,
            "prompt_tokens_details": {"cached_tokens": 400, "cache_write_tokens": 100},
        },
    )
    assert (usage.input_tokens, usage.cache_read_tokens, usage.cache_write_tokens) == (
        500,
        400,
        100,
    )


def test_it_reads_an_embeddings_body_with_no_completion():
    body = {"object": "list", "model": "text-embedding-3-small", "data": [], "usage": {}}
    body["usage"] = {"prompt_tokens": 8, "total_tokens": 8}
    usage = extract_usage("openai", body)
    assert (usage.input_tokens, usage.output_tokens, usage.found) == (8, 0, True)


def test_it_reads_openai_responses_usage():
    usage = extract_usage("openai", load(OPENAI_RESPONSE))
    assert (usage.model, usage.response_id) == ("o4-mini-2025-04-16", "resp_68a1b2c3")
    assert (usage.input_tokens, usage.cache_read_tokens, usage.cache_write_tokens) == (300, 1024, 0)
    assert (usage.output_tokens, usage.reasoning_tokens) == (812, 640)


def test_it_reads_anthropic_with_search_and_5m_cache_writes():
    usage = extract_usage("anthropic", load(ANTHROPIC_MESSAGE))
    assert usage.found and usage.model == "claude-sonnet-4-5-20250929"
    assert usage.input_tokens == 412  # Anthropic input already excludes cache reads and writes
    assert (usage.cache_read_tokens, usage.cache_write_tokens, usage.cache_write_1h_tokens) == (
        8192,
        2048,
        0,
    )
    assert (usage.output_tokens, usage.search_queries) == (230, 1)


def test_it_splits_anthropic_5m_and_1h_cache_writes():
    usage = extract_usage(
        "anthropic",
        {
            "input_tokens": 10,
            "output_tokens": 5,
            "cache_creation_input_tokens": 3500,
            "cache_creation": {
                "ephemeral_5m_input_tokens": 1000,
                "ephemeral_1h_input_tokens": 2000,
            },
            "output_tokens_details": {"thinking_tokens": 3},
        },
    )
    # 500 of the 3,500 written are in neither bucket: billed as 5-minute writes.
    assert (usage.cache_write_tokens, usage.cache_write_1h_tokens) == (1500, 2000)
    assert usage.reasoning_tokens == 3


def test_it_counts_anthropic_cache_creation_as_5m_without_a_breakdown():
    usage = extract_usage(
        "anthropic", {"input_tokens": 1, "output_tokens": 1, "cache_creation_input_tokens": 700}
    )
    assert (usage.cache_write_tokens, usage.cache_write_1h_tokens) == (700, 0)


def test_it_reads_groq_usage():
    usage = extract_usage("groq", load(GROQ_CHAT))
    assert (usage.model, usage.input_tokens, usage.output_tokens) == ("openai/gpt-oss-120b", 84, 12)
    assert usage.reasoning_tokens == 4


def test_it_reads_groq_usage_from_x_groq():
    body = load(GROQ_CHAT)
    body["usage"] = None
    body["x_groq"]["usage"] = {"prompt_tokens": 84, "completion_tokens": 12, "total_tokens": 96}
    usage = extract_usage("groq", body)
    assert usage.found and (usage.input_tokens, usage.output_tokens) == (84, 12)


def test_it_ignores_groq_cache_counters_that_are_not_usage():
    body = load(GROQ_CHAT)
    del body["usage"]
    body["x_groq"]["usage"] = {"dram_cached_tokens": 3, "sram_cached_tokens": 0}
    usage = extract_usage("groq", body)
    assert not usage.found and usage.model == "openai/gpt-oss-120b"


def test_it_reads_perplexity_cost_and_context_size():
    usage = extract_usage("perplexity", load(PERPLEXITY_CHAT))
    assert (usage.input_tokens, usage.output_tokens) == (9, 11)
    assert usage.provider_cost == Decimal("0.00502")
    assert usage.search_context_size == "low"


def test_it_does_not_mistake_perplexity_search_images_for_an_image_count():
    body = load(PERPLEXITY_CHAT)
    body["images"] = [{"image_url": "https://example.org/paris.jpg", "origin_url": None}]
    usage = extract_usage("perplexity", body)
    assert (usage.images, usage.input_tokens, usage.output_tokens) == (0, 9, 11)


def test_it_reads_perplexity_agent_api_usage():
    # Reference §5.2: Responses-style usage whose input_tokens include the cache reads.
    body = load(
        """{"usage": {"input_tokens": 1830, "output_tokens": 412, "total_tokens": 2242,
        "input_tokens_details": {"cache_creation_input_tokens": 0, "cache_read_input_tokens": 1024},
        "tool_calls_details": {"web_search": {"invocation": 2}},
        "cost": {"currency": "USD", "input_cost": 0.002418, "output_cost": 0.00618,
          "cache_read_cost": 0.000307, "tool_calls_cost": 0.01, "total_cost": 0.018905}}}"""
    )
    usage = extract_usage("perplexity", body)
    assert (usage.input_tokens, usage.cache_read_tokens, usage.output_tokens) == (806, 1024, 412)
    assert usage.search_queries == 2
    assert usage.provider_cost == Decimal("0.018905")


def test_it_adds_perplexity_reasoning_reported_beyond_completion_tokens():
    body = {"prompt_tokens": 19, "completion_tokens": 100, "reasoning_tokens": 900}
    body["num_search_queries"] = 24
    usage = extract_usage("perplexity", body)
    assert (usage.output_tokens, usage.reasoning_tokens, usage.search_queries) == (1000, 900, 24)


def test_it_reads_ollama_native_chat():
    usage = extract_usage("ollama", load(OLLAMA_CHAT))
    assert usage.found and usage.model == "llama3.2"
    assert (usage.input_tokens, usage.output_tokens) == (26, 18)
    assert usage.total_duration_ns == 1874560334


def test_it_treats_missing_ollama_counts_as_zero():
    body = {"model": "llama3.2", "response": "", "done": True, "total_duration": 5_000}
    usage = extract_usage("ollama", body)
    assert usage.found and (usage.input_tokens, usage.output_tokens) == (0, 0)
    assert usage.total_duration_ns == 5_000


def test_it_reads_ollama_openai_compatible_usage():
    body = {"model": "llama3.2", "usage": {"prompt_tokens": 26, "completion_tokens": 18}}
    usage = extract_usage("ollama", body)
    assert (usage.input_tokens, usage.output_tokens, usage.total_duration_ns) == (26, 18, 0)


def test_it_accepts_normalised_counts():
    usage = extract_usage(
        "copilot",
        {
            "model": "gpt-4o",
            "input_tokens": "600",
            "cache_read_tokens": Decimal("400"),
            "output_tokens": 200,
            "reasoning_tokens": 50,
            "request_count": 3,
            "audio_seconds": "1.5",
            "provider_cost": "0.25",
        },
    )
    assert (usage.input_tokens, usage.cache_read_tokens, usage.output_tokens) == (600, 400, 200)
    assert (usage.reasoning_tokens, usage.request_count) == (50, 3)
    assert usage.audio_seconds == Decimal("1.5")
    assert usage.provider_cost == Decimal("0.25")


def test_it_accepts_normalised_counts_with_only_token_fields():
    usage = extract_usage("openai", {"model": "gpt-4o", "input_tokens": 5, "output_tokens": 3})
    assert usage.found and (usage.model, usage.input_tokens, usage.output_tokens) == (
        "gpt-4o",
        5,
        3,
    )


def test_it_names_the_x_groq_path_in_errors():
    body = {"model": "m", "usage": None, "x_groq": {"usage": {"prompt_tokens": -1}}}
    with pytest.raises(ValueError, match="x_groq.usage.prompt_tokens"):
        extract_usage("groq", body)


def test_it_reports_no_usage_when_the_body_has_none():
    body = load(OPENAI_CHAT)
    body["usage"] = None
    usage = extract_usage("openai", body)
    assert not usage.found and usage.model == "gpt-4.1-2025-04-14"


@pytest.mark.parametrize(
    ("kind", "body", "field"),
    [
        ("openai", {"prompt_tokens": -1, "completion_tokens": 1}, "usage.prompt_tokens"),
        ("openai", {"prompt_tokens": "many", "completion_tokens": 1}, "usage.prompt_tokens"),
        ("openai", {"prompt_tokens": 1, "completion_tokens": True}, "usage.completion_tokens"),
        ("openai", {"prompt_tokens": 1.5, "completion_tokens": 1}, "usage.prompt_tokens"),
        ("openai", {"prompt_tokens": 5, "prompt_tokens_details": {"cached_tokens": 9}}, "prompt"),
        ("anthropic", {"input_tokens": 1, "output_tokens": [2]}, "usage.output_tokens"),
        ("perplexity", {"prompt_tokens": 1, "cost": {"total_cost": "-1"}}, "cost.total_cost"),
        ("ollama", {"done": True, "eval_count": -3}, "eval_count"),
        ("openai", {"input_tokens": 1, "request_count": "x"}, "request_count"),
        ("openai", {"output_tokens": 1, "reasoning_tokens": 2, "images": 0}, "reasoning_tokens"),
    ],
)
def test_it_rejects_bad_numbers_naming_the_field(kind, body, field):
    with pytest.raises(ValueError, match=field):
        extract_usage(kind, body)


def test_it_rejects_an_unknown_kind():
    with pytest.raises(ValueError, match="kind"):
        extract_usage("no-such-provider", {})


# --- streaming -------------------------------------------------------------------------------


def sse(*events: dict | str, crlf: bool = False) -> bytes:
    """Events as an SSE body: `data: <json>` + blank line (strings are sent as-is)."""
    parts = []
    for event in events:
        data = event if isinstance(event, str) else json.dumps(event, ensure_ascii=False)
        parts.append(f"data: {data}\n\n")
    text = "".join(parts)
    return (text.replace("\n", "\r\n") if crlf else text).encode()


def feed_all(kind: str, style: str, stream: bytes, how: str) -> RequestUsage:
    """Feed `stream` whole, byte by byte, or in random odd-sized pieces."""
    tracker = StreamUsageTracker(kind, style)
    if how == "whole":
        tracker.feed(stream)
    elif how == "bytes":
        for index in range(len(stream)):
            tracker.feed(stream[index : index + 1])
    else:
        rng = random.Random(7)
        start = 0
        while start < len(stream):
            size = rng.choice((1, 2, 3, 5, 7, 13, 64))
            tracker.feed(stream[start : start + size])
            start += size
    return tracker.usage()


SPLITS = ("whole", "bytes", "odd")

OPENAI_CHUNK = {
    "id": "chatcmpl-BxYz123",
    "object": "chat.completion.chunk",
    "model": "gpt-4.1-2025-04-14",
    "choices": [{"index": 0, "delta": {"content": "Héllo — 日本"}, "finish_reason": None}],
    "usage": None,
}
OPENAI_USAGE_CHUNK = {
    **OPENAI_CHUNK,
    "choices": [],
    "usage": load(OPENAI_CHAT)["usage"],
}


@pytest.mark.parametrize("how", SPLITS)
@pytest.mark.parametrize("crlf", [False, True])
def test_it_tracks_an_openai_chat_stream(how, crlf):
    stream = sse(OPENAI_CHUNK, OPENAI_CHUNK, OPENAI_USAGE_CHUNK, "[DONE]", crlf=crlf)
    usage = feed_all("openai", "sse", stream, how)
    assert usage.found and usage.response_id == "chatcmpl-BxYz123"
    assert (usage.input_tokens, usage.cache_read_tokens, usage.output_tokens) == (220, 1920, 96)


@pytest.mark.parametrize("how", SPLITS)
def test_it_tracks_a_groq_stream_with_x_groq_usage(how):
    final = load(GROQ_CHAT)
    del final["usage"]
    final["object"] = "chat.completion.chunk"
    final["x_groq"]["usage"] = {"prompt_tokens": 84, "completion_tokens": 12, "total_tokens": 96}
    first = {"id": final["id"], "model": final["model"], "choices": [], "x_groq": {"id": "req_1"}}
    usage = feed_all("groq", "sse", sse(first, final, "[DONE]"), how)
    assert usage.found and usage.model == "openai/gpt-oss-120b"
    assert (usage.input_tokens, usage.output_tokens) == (84, 12)


@pytest.mark.parametrize("how", SPLITS)
def test_it_tracks_an_openai_responses_stream(how):
    response = load(OPENAI_RESPONSE)
    created = {**response, "status": "in_progress", "usage": None}
    events = [
        {"type": "response.created", "response": created, "sequence_number": 0},
        {"type": "response.output_text.delta", "delta": "usage is ≈ tokens", "sequence_number": 1},
        {"type": "response.completed", "response": response, "sequence_number": 2},
    ]
    stream = b"".join(
        f"event: {event['type']}\n".encode() + sse(event) for event in events
    )  # Responses streams name each event
    usage = feed_all("openai", "sse", stream, how)
    assert (usage.model, usage.response_id) == ("o4-mini-2025-04-16", "resp_68a1b2c3")
    assert (usage.input_tokens, usage.output_tokens, usage.reasoning_tokens) == (300, 812, 640)


ANTHROPIC_STREAM = """event: message_start
data: {"type":"message_start","message":{"id":"msg_01XyZ","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":412,"cache_creation_input_tokens":2048,"cache_read_input_tokens":8192,"output_tokens":1}}}

event: ping
data: {"type": "ping"}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Grüße"}}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":230}}

event: message_stop
data: {"type":"message_stop"}

""".encode()  # noqa: E501 - Reference §7 verbatim, plus a ping and a non-ASCII text delta.


@pytest.mark.parametrize("how", SPLITS)
def test_it_tracks_an_anthropic_stream(how):
    usage = feed_all("anthropic", "sse", ANTHROPIC_STREAM, how)
    assert (usage.model, usage.response_id) == ("claude-sonnet-4-5-20250929", "msg_01XyZ")
    # input side from message_start, output from the last message_delta
    assert (usage.input_tokens, usage.cache_read_tokens, usage.cache_write_tokens) == (
        412,
        8192,
        2048,
    )
    assert usage.output_tokens == 230


def test_it_takes_the_last_cumulative_anthropic_delta():
    start = {
        "type": "message_start",
        "message": {"id": "msg_1", "model": "claude-sonnet-4-5", "usage": {"input_tokens": 2679}},
    }
    delta = {"type": "message_delta", "usage": {"output_tokens": 100}}
    last = {
        "type": "message_delta",
        "usage": {
            "input_tokens": 10682,
            "output_tokens": 510,
            "server_tool_use": {"web_search_requests": 1},
        },
    }
    usage = feed_all("anthropic", "sse", sse(start, delta, last), "odd")
    # cumulative counts: 510 output, not 100 + 510; the delta's larger input replaces 2,679
    assert (usage.input_tokens, usage.output_tokens, usage.search_queries) == (10682, 510, 1)


def test_it_tracks_a_perplexity_stream_keeping_the_last_usage():
    body = json.loads(PERPLEXITY_CHAT)  # plain floats: this is the wire text, re-encoded
    early = {**body, "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}}
    usage = feed_all("perplexity", "sse", sse(early, body, "[DONE]"), "bytes")
    assert (usage.output_tokens, usage.provider_cost) == (11, Decimal("0.00502"))


def ollama_stream(crlf: bool = False) -> bytes:
    lines = [
        {"model": "llama3.2", "created_at": "2026-08-21T09:14:06Z", "message": {"content": "Hé"}},
        {"model": "llama3.2", "message": {"role": "assistant", "content": "llo 日本"}},
        load(OLLAMA_CHAT),
    ]
    lines[0]["done"] = lines[1]["done"] = False
    newline = "\r\n" if crlf else "\n"
    text = "".join(json.dumps(line, ensure_ascii=False) + newline for line in lines)
    return text.encode()


@pytest.mark.parametrize("how", SPLITS)
@pytest.mark.parametrize("crlf", [False, True])
def test_it_tracks_an_ollama_ndjson_stream(how, crlf):
    usage = feed_all("ollama", "ndjson", ollama_stream(crlf), how)
    assert usage.found and usage.model == "llama3.2"
    assert (usage.input_tokens, usage.output_tokens, usage.total_duration_ns) == (
        26,
        18,
        1874560334,
    )


@pytest.mark.parametrize(
    ("kind", "style", "stream"),
    [
        ("openai", "sse", sse(OPENAI_CHUNK, OPENAI_CHUNK)),
        ("openai", "sse", sse(OPENAI_CHUNK, OPENAI_USAGE_CHUNK)[:-40]),  # cut inside the usage
        ("anthropic", "sse", ANTHROPIC_STREAM[:40]),
        ("ollama", "ndjson", ollama_stream()[:-30]),
        ("groq", "sse", b""),
    ],
)
def test_it_reports_not_found_for_a_stream_cut_before_usage(kind, style, stream):
    usage = feed_all(kind, style, stream, "odd")
    assert not usage.found
    assert usage.input_tokens == usage.output_tokens == 0


def test_it_keeps_the_input_side_when_anthropic_stops_before_message_delta():
    cut = ANTHROPIC_STREAM[: ANTHROPIC_STREAM.index(b"event: ping")]
    usage = feed_all("anthropic", "sse", cut, "bytes")
    assert usage.found and (usage.input_tokens, usage.output_tokens) == (412, 1)


def test_it_reads_a_final_event_without_its_terminating_blank_line():
    usage = feed_all("openai", "sse", sse(OPENAI_CHUNK, OPENAI_USAGE_CHUNK).rstrip(b"\n"), "whole")
    assert usage.found and usage.output_tokens == 96


def test_it_reads_events_a_server_sent_without_blank_lines():
    stream = sse(OPENAI_CHUNK, OPENAI_USAGE_CHUNK).replace(b"\n\n", b"\n")
    usage = feed_all("openai", "sse", stream, "odd")
    assert usage.found and usage.input_tokens == 220


def test_it_skips_malformed_events_without_raising():
    stream = b"data: {not json\n\n: keep-alive comment\n\ndata: \xff\xfe\n\n" + sse(
        OPENAI_USAGE_CHUNK
    )
    usage = feed_all("openai", "sse", stream, "bytes")
    assert usage.found and usage.output_tokens == 96


def test_it_drops_an_over_long_line_and_recovers():
    tracker = StreamUsageTracker("openai", "sse")
    tracker.MAX_LINE_BYTES = 64
    tracker.feed(b"data: " + b"x" * 100)
    tracker.feed(b"y" * 100 + b"\n\n" + sse(OPENAI_USAGE_CHUNK))
    assert tracker.usage().output_tokens == 96


def test_it_rejects_an_unknown_stream_style():
    with pytest.raises(ValueError, match="style"):
        StreamUsageTracker("openai", "websocket")


# --- add_include_usage -----------------------------------------------------------------------


def test_it_adds_include_usage_to_a_streamed_chat_request():
    body = {"model": "gpt-4o", "messages": [], "stream": True}
    assert add_include_usage(body)["stream_options"] == {"include_usage": True}
    assert "stream_options" not in body  # the caller's dict is not changed


def test_it_keeps_other_stream_options_and_overrides_a_false_include_usage():
    body = {
        "prompt": "hi",
        "stream": True,
        "stream_options": {"include_usage": False, "include_obfuscation": False},
    }
    assert add_include_usage(body)["stream_options"] == {
        "include_usage": True,
        "include_obfuscation": False,
    }


@pytest.mark.parametrize(
    "body",
    [
        {"model": "gpt-4o", "messages": []},
        {"model": "gpt-4o", "messages": [], "stream": False},
        {"model": "gpt-4o", "input": "hi", "stream": True},  # Responses API: always has usage
        {"messages": [], "stream": True, "stream_options": {"include_usage": True}},
    ],
)
def test_it_leaves_requests_that_need_no_include_usage_alone(body):
    assert add_include_usage(body) is body
