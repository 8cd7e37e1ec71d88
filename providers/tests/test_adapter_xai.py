"""xAI (Grok): the proxy (official `openai` SDK: chat completions and Responses, streamed and
not), the ingestion API, its own billed cost (usage.cost_in_usd_ticks) beating the price book,
cached and reasoning tokens priced from the shipped snapshot by hand, and the connection test.

Facts: shared/reference/providers-more.md §4. Prices: the shipped LiteLLM snapshot
(usage/data/litellm_model_prices.json, keys "xai/<model>"), imported as the app does.

Every database test here is transactional: a plain `django_db` test run before a live-server
test in the same process leaves the server thread closing a connection it does not own (a
PytestUnhandledThreadExceptionWarning, seen on main with test_provider_homes + test_proxy).
"""

from __future__ import annotations

import dataclasses
import json
from decimal import Decimal

import pytest

from providers.adapters.xai import XAIAdapter
from providers.http import ProviderError
from providers.services import ingest_key_create
from providers.tests.factories import AccountFactory, provider
from providers.tests.test_proxy import (  # noqa: F401 - fixtures are used by name
    MESSAGES,
    PROVIDER_KEY,
    _fresh_price_cache,
    _now,
    assert_no_ingest_key_forwarded,
    connect,
    finished_fixture,
    only_record,
    openai_client,
    received,
    records_after,
)
from providers.tests.test_proxy_streaming import sse, streamed
from usage.extraction import extract_usage
from usage.models import RecordStatus, UsageRecord
from usage.pricing import LONG_CONTEXT_FIELDS, Price, cost_for
from usage.services.prices import load_price_file, price_rules_from_file, prices_import

KIND = "xai"
live = pytest.mark.django_db(transaction=True, serialized_rollback=True)

# The snapshot's xai/grok-4.3: $1.25/M in, $0.20/M cached, $2.50/M out; a prompt of 200k
# tokens or more: $2.50/M in, $0.40/M cached, $5/M out.
GROK = Price(
    input_per_token=Decimal("0.00000125"),
    cache_read_per_token=Decimal("0.0000002"),
    output_per_token=Decimal("0.0000025"),
    long_context_threshold=200_000,
    input_per_token_long=Decimal("0.0000025"),
    cache_read_per_token_long=Decimal("0.0000004"),
    output_per_token_long=Decimal("0.000005"),
)

# §4's example: 900 prompt of which 640 cached, 410 completion of which 380 reasoning.
USAGE = {
    "prompt_tokens": 900,
    "completion_tokens": 410,
    "total_tokens": 1310,
    "prompt_tokens_details": {
        "text_tokens": 900,
        "audio_tokens": 0,
        "image_tokens": 0,
        "cached_tokens": 640,
    },
    "completion_tokens_details": {
        "reasoning_tokens": 380,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    },
    "num_sources_used": 0,
    "cost_in_usd_ticks": 37756000,
}
CHAT = {
    "id": "3f1c9a2e-0b7d-4c55-9d0e-7a1b2c3d4e5f",
    "object": "chat.completion",
    "created": 1785600000,
    "model": "grok-4.3",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "Paris."}, "finish_reason": "stop"}
    ],
    "usage": USAGE,
}
WITHOUT_TICKS = {k: v for k, v in USAGE.items() if k != "cost_in_usd_ticks"}
RESPONSES_USAGE = {
    "input_tokens": 900,
    "input_tokens_details": {"cached_tokens": 640},
    "output_tokens": 410,
    "output_tokens_details": {"reasoning_tokens": 380},
    "total_tokens": 1310,
    "cost_in_usd_ticks": 94000,
}
RESPONSE = {
    "id": "resp_xai_0001",
    "object": "response",
    "created_at": 1785600000,
    "model": "grok-4.3",
    "status": "completed",
    "output": [
        {
            "type": "message",
            "id": "msg_1",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": "Paris.", "annotations": []}],
        }
    ],
    "usage": RESPONSES_USAGE,
}


def chunk(delta: dict | None, *, finish=None, usage=None) -> dict:
    body = {
        "id": "chatcmpl-xai-stream-1",
        "object": "chat.completion.chunk",
        "created": 1785600000,
        "model": "grok-4.3",
        "choices": [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    if usage is not None:
        body["usage"] = usage
    return body


# As seen from xAI (litellm#17136): the usage arrives on the chunk before a last one without it.
STREAM = sse(
    chunk({"role": "assistant", "content": "Par"}),
    chunk({"content": "is."}, finish="stop"),
    chunk(None, usage=WITHOUT_TICKS),
    chunk(None),
)


@pytest.fixture(name="upstream")
def upstream_fixture(settings, httpserver):
    settings.XAI_BASE_URL = httpserver.url_for("/").rstrip("/")
    return httpserver


@pytest.fixture(name="snapshot_prices")
def snapshot_prices_fixture():
    """The shipped snapshot's xAI prices, imported the way `import_prices` does."""
    prices_import(data=load_price_file(), kinds=[KIND])


# --- the shipped snapshot ---------------------------------------------------------------------


def test_it_reads_its_prices_from_the_shipped_snapshot():
    rules = price_rules_from_file(load_price_file())

    assert rules[(KIND, "grok-4.3")] == GROK


# --- its own cost and the price book, worked by hand -------------------------------------------


def test_it_takes_the_billed_ticks_exactly_over_the_price_book():
    usage = extract_usage(KIND, CHAT)

    assert usage.provider_cost == Decimal("0.0037756")  # 37,756,000 ticks / 10^10 = $0.0037756
    assert cost_for(KIND, usage, GROK) == Decimal("0.0037756")  # not the book's $0.001478
    assert cost_for(KIND, usage, None) == Decimal("0.0037756")  # nor unpriced without a book


def test_it_keeps_every_tick_of_a_large_or_float_shaped_figure():
    # JSON read with parse_float=Decimal: 1.2345678901e10 is 12,345,678,901 whole ticks.
    body = json.loads(
        '{"model": "grok-4.3", "usage": {"prompt_tokens": 1, "completion_tokens": 1,'
        ' "cost_in_usd_ticks": 1.2345678901e10}}',
        parse_float=Decimal,
    )
    # 12,345,678,901 / 10^10 = $1.2345678901, every tick kept
    assert extract_usage(KIND, body).provider_cost == Decimal("1.2345678901")
    one_tick = {"model": "grok-4.3", "usage": {"prompt_tokens": 1, "cost_in_usd_ticks": 1}}
    assert extract_usage(KIND, one_tick).provider_cost == Decimal("0.0000000001")  # 1 / 10^10


def test_it_prices_cached_and_reasoning_tokens_from_the_book_without_ticks():
    usage = extract_usage(KIND, {"model": "grok-4.3", "usage": WITHOUT_TICKS})

    assert (usage.input_tokens, usage.cache_read_tokens) == (260, 640)  # 900 - 640 uncached
    assert (usage.output_tokens, usage.reasoning_tokens) == (410, 380)  # reasoning inside
    assert usage.provider_cost is None
    # 260 × $1.25/M = 0.000325; 640 × $0.20/M = 0.000128; 410 × $2.50/M = 0.001025
    # 0.000325 + 0.000128 + 0.001025 = 0.001478
    assert cost_for(KIND, usage, GROK) == Decimal("0.001478")


def test_it_adds_reasoning_reported_apart_from_a_smaller_completion_count():
    # Whether xAI counts reasoning inside completion_tokens is UNCONFIRMED: more reasoning
    # than completion can only mean it was counted apart.
    body = {
        "model": "grok-4.3",
        "usage": {
            "prompt_tokens": 900,
            "completion_tokens": 30,
            "prompt_tokens_details": {"cached_tokens": 640},
            "completion_tokens_details": {"reasoning_tokens": 380},
        },
    }
    usage = extract_usage(KIND, body)

    assert (usage.output_tokens, usage.reasoning_tokens) == (410, 380)  # 30 + 380
    assert cost_for(KIND, usage, GROK) == Decimal("0.001478")  # as above: 410 output tokens


@pytest.mark.parametrize(
    ("prompt", "cached", "expected"),
    [
        # 199,999 is under the tier: 199,999 × $1.25/M = 0.24999875; 1,000 × $2.50/M = 0.0025
        # 0.24999875 + 0.0025 = 0.25249875
        (199_999, 0, Decimal("0.25249875")),
        # Exactly 200,000 is in it for xAI (LiteLLM's >= for xAI; > for everyone else):
        # 200,000 × $2.50/M = 0.5; 1,000 × $5/M = 0.005; 0.5 + 0.005 = 0.505
        (200_000, 0, Decimal("0.505")),
        # Cached tokens count toward the prompt: 150,000 uncached × $2.50/M = 0.375;
        # 100,000 cached × $0.40/M = 0.04; 1,000 × $5/M = 0.005; sum 0.42
        (250_000, 100_000, Decimal("0.42")),
    ],
)
def test_it_prices_the_long_context_tier_from_its_threshold(prompt, cached, expected):
    body = {
        "model": "grok-4.3",
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": 1000,
            "prompt_tokens_details": {"cached_tokens": cached},
        },
    }
    assert cost_for(KIND, extract_usage(KIND, body), GROK) == expected


def test_it_prices_a_model_without_a_tier_as_usual():
    flat = dataclasses.replace(GROK, **dict.fromkeys(LONG_CONTEXT_FIELDS))
    body = {"model": "grok-4.3", "usage": {"prompt_tokens": 300_000, "completion_tokens": 0}}
    # 300,000 × $1.25/M = 0.375, no tier to enter
    assert cost_for(KIND, extract_usage(KIND, body), flat) == Decimal("0.375")


def test_it_leaves_an_unpriced_model_without_ticks_unpriced():
    usage = extract_usage(KIND, {"model": "grok-9-preview", "usage": WITHOUT_TICKS})
    assert cost_for(KIND, usage, None) is None


@pytest.mark.parametrize("ticks", [-1, "many", 12.5])
def test_it_refuses_ticks_that_are_not_a_whole_count(ticks):
    body = {"model": "grok-4.3", "usage": {**WITHOUT_TICKS, "cost_in_usd_ticks": ticks}}
    with pytest.raises(ValueError, match="usage.cost_in_usd_ticks"):
        extract_usage(KIND, body)


# --- through the proxy, with the official openai SDK --------------------------------------------


@live
def test_it_forwards_a_chat_call_and_records_the_billed_ticks(
    live_server, upstream, snapshot_prices
):
    account, raw = connect(KIND)
    upstream.expect_request("/v1/chat/completions", method="POST").respond_with_json(CHAT)
    client = openai_client(live_server, KIND, raw)

    reply = client.chat.completions.create(model="grok-4.3", messages=MESSAGES)

    assert reply.usage.prompt_tokens == 900
    (sent,) = received(upstream, "/v1/chat/completions")
    assert sent.headers["Authorization"] == f"Bearer {PROVIDER_KEY}"
    assert_no_ingest_key_forwarded(sent, raw)
    assert sent.get_json() == {"model": "grok-4.3", "messages": MESSAGES}  # untouched
    record = only_record(account)
    assert (record.status, record.request_id) == (RecordStatus.OK, CHAT["id"])
    assert (record.input_tokens, record.cache_read_tokens, record.output_tokens) == (260, 640, 410)
    assert record.reasoning_tokens == 380
    assert record.cost == Decimal("0.0037756")  # 37,756,000 ticks / 10^10, not the book


@live
def test_it_streams_chat_asking_for_usage_and_prices_it_from_the_snapshot(
    live_server, upstream, finished, snapshot_prices
):
    account, raw = connect(KIND)
    upstream.expect_request("/v1/chat/completions").respond_with_handler(streamed(STREAM))
    client = openai_client(live_server, KIND, raw)

    chunks = list(client.chat.completions.create(model="grok-4.3", messages=MESSAGES, stream=True))

    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Paris."
    (sent,) = received(upstream, "/v1/chat/completions")
    assert sent.get_json()["stream_options"] == {"include_usage": True}  # added by the proxy
    (record,) = records_after(finished, account)
    assert (record.status, record.request_id) == (RecordStatus.OK, "chatcmpl-xai-stream-1")
    assert (record.input_tokens, record.cache_read_tokens, record.output_tokens) == (260, 640, 410)
    # no ticks in this stream: 260 × $1.25/M + 640 × $0.20/M + 410 × $2.50/M
    # = 0.000325 + 0.000128 + 0.001025 = 0.001478 (the usage chunk was not the last one)
    assert record.cost == Decimal("0.001478")


@live
def test_it_forwards_a_responses_call_and_passes_the_model_list_through_unrecorded(
    live_server, upstream
):
    account, raw = connect(KIND)
    upstream.expect_request("/v1/responses", method="POST").respond_with_json(RESPONSE)
    upstream.expect_request("/v1/models", method="GET").respond_with_json(
        {"object": "list", "data": [{"id": "grok-4.3", "object": "model", "owned_by": "xai"}]}
    )
    client = openai_client(live_server, KIND, raw)

    reply = client.responses.create(model="grok-4.3", input="Capital of France?")
    models = client.models.list()

    assert reply.output_text == "Paris."
    assert [m.id for m in models] == ["grok-4.3"]
    record = only_record(account)  # the model list is not a billed call
    assert (record.request_id, record.input_tokens, record.cache_read_tokens) == (
        "resp_xai_0001",
        260,
        640,
    )
    assert (record.output_tokens, record.reasoning_tokens) == (410, 380)
    assert record.cost == Decimal("0.0000094")  # 94,000 ticks / 10^10


@live
def test_it_streams_a_responses_call_and_records_the_ticks_of_response_completed(
    live_server, upstream, finished
):
    account, raw = connect(KIND)
    started = {**RESPONSE, "status": "in_progress", "output": [], "usage": None}
    events = [
        {"type": "response.created", "sequence_number": 0, "response": started},
        {
            "type": "response.output_text.delta",
            "sequence_number": 1,
            "item_id": "msg_1",
            "output_index": 0,
            "content_index": 0,
            "delta": "Paris.",
        },
        {"type": "response.completed", "sequence_number": 2, "response": RESPONSE},
    ]
    upstream.expect_request("/v1/responses").respond_with_handler(
        streamed(sse(*events, done=False, named=True))
    )
    client = openai_client(live_server, KIND, raw)

    seen = [
        event.type for event in client.responses.create(model="grok-4.3", input="Hi", stream=True)
    ]

    assert seen == ["response.created", "response.output_text.delta", "response.completed"]
    (sent,) = received(upstream, "/v1/responses")
    assert "stream_options" not in sent.get_json()  # Responses report usage in .completed
    (record,) = records_after(finished, account)
    assert (record.status, record.input_tokens, record.output_tokens) == (RecordStatus.OK, 260, 410)
    assert record.cost == Decimal("0.0000094")  # 94,000 ticks / 10^10


@live
def test_it_records_an_unpriced_model_without_ticks_as_unpriced_not_free(live_server, upstream):
    account, raw = connect(KIND)  # no price rows at all
    body = {**CHAT, "model": "grok-9-preview", "usage": WITHOUT_TICKS}
    upstream.expect_request("/v1/chat/completions").respond_with_json(body)

    openai_client(live_server, KIND, raw).chat.completions.create(
        model="grok-9-preview", messages=MESSAGES
    )

    record = only_record(account)
    assert (record.status, record.input_tokens, record.output_tokens) == (RecordStatus.OK, 260, 410)
    assert record.cost is None


# --- the ingestion API ------------------------------------------------------------------------


@live
def test_the_ingestion_api_accepts_whole_bodies_and_a_streamed_usage_chunk(client, snapshot_prices):
    account = AccountFactory(provider=provider(KIND))
    raw, _ = ingest_key_create(account=account)
    usage_chunk = json.loads(STREAM[2].removeprefix(b"data: "))
    text = json.dumps(
        [
            {"request_id": "chat", "usage": CHAT},
            # Nested: a flat Responses body's "status": "completed" is read as the event's.
            {"request_id": "responses", "usage": RESPONSE},
            {"request_id": "streamed", **usage_chunk},
        ]
    )

    response = client.post(
        "/api/usage/events",
        data=text,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {raw}",
    )

    assert response.json()["created"] == 3, response.json()
    costs = dict(UsageRecord.objects.filter(account=account).values_list("request_id", "cost"))
    assert costs == {
        "chat": Decimal("0.0037756"),  # 37,756,000 ticks / 10^10
        "responses": Decimal("0.0000094"),  # 94,000 ticks / 10^10
        "streamed": Decimal("0.001478"),  # no ticks: 260 × $1.25/M + 640 × $0.20/M + 410 × $2.50/M
    }


# --- connection test ---------------------------------------------------------------------------


def test_it_tests_a_key_by_listing_models(httpserver):
    httpserver.expect_request("/v1/models").respond_with_json(
        {"object": "list", "data": [{"id": "grok-4.3"}, {"id": "grok-code-fast-1"}]}
    )
    adapter = XAIAdapter(base_url=httpserver.url_for("/v1"), secret="xai-test", config={})

    assert adapter.test_connection() == "Connected to xAI (2 models available)"
    (request, _) = httpserver.log[0]
    assert request.path == "/v1/models"  # the pasted /v1 is not doubled
    assert request.headers["Authorization"] == "Bearer xai-test"


def test_it_reports_a_rejected_key_without_showing_it(httpserver):
    key = "xai-secret-0123456789abcdef"
    httpserver.expect_request("/v1/models").respond_with_json(
        {"code": "Client specified an invalid argument", "error": f"Incorrect API key: {key}"},
        status=401,
    )
    adapter = XAIAdapter(base_url=httpserver.url_for(""), secret=key, config={})

    with pytest.raises(ProviderError) as info:
        adapter.test_connection()

    assert (info.value.message, info.value.permanent) == ("key rejected (401)", True)
    assert len(httpserver.log) == 1  # permanent: not retried
    error = info.value
    assert key not in f"{error} {error.detail} {error.body_excerpt}"


def test_it_defaults_to_the_public_api():
    assert XAIAdapter(base_url="", secret="k", config={}).base_url == "https://api.x.ai"
