"""Mistral: the proxy (official `openai` SDK, streamed and not), the ingestion API, the cached
counts wherever Mistral puts them, snapshot prices worked by hand, and the connection test.

Facts: shared/reference/providers-more.md §2. Prices: the shipped LiteLLM snapshot
(usage/data/litellm_model_prices.json, keys "mistral/<model>"), imported as the app does.

Every database test here is transactional: a plain `django_db` test run before a live-server
test in the same process leaves the server thread closing a connection it does not own (a
PytestUnhandledThreadExceptionWarning, seen on main with test_provider_homes + test_proxy).
"""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from providers.adapters.mistral import MistralAdapter
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
from usage.pricing import Price, cost_for
from usage.services.prices import load_price_file, price_rules_from_file, prices_import

KIND = "mistral"
live = pytest.mark.django_db(transaction=True, serialized_rollback=True)

# The snapshot's mistral/mistral-small-latest: $0.15/M in, $0.015/M cached, $0.60/M out.
SMALL = Price(
    input_per_token=Decimal("0.00000015"),
    cache_read_per_token=Decimal("0.000000015"),
    output_per_token=Decimal("0.0000006"),
)

CHAT = {
    "id": "cmpl-e5cc70bb28c444948073e77776eb30ef",
    "object": "chat.completion",
    "created": 1785600000,
    "model": "mistral-small-latest",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "Hi."}, "finish_reason": "stop"}
    ],
    "usage": {
        "prompt_tokens": 1013,
        "completion_tokens": 30,
        "total_tokens": 1043,
        "prompt_tokens_details": {"cached_tokens": 1008},
    },
}


def chunk(delta: dict, *, finish=None, usage=None) -> dict:
    body = {
        "id": "cmpl-stream-mistral-1",
        "object": "chat.completion.chunk",
        "created": 1785600000,
        "model": "mistral-small-latest",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    if usage is not None:
        body["usage"] = usage
    return body


# Usage rides on the chunk that finishes the choice, unasked (§2).
STREAM = sse(
    chunk({"role": "assistant", "content": "Bon"}),
    chunk({"content": "jour"}),
    chunk(
        {"content": ""},
        finish="stop",
        usage={"prompt_tokens": 801, "completion_tokens": 2, "total_tokens": 803},
    ),
)


@pytest.fixture(name="upstream")
def upstream_fixture(settings, httpserver):
    settings.MISTRAL_BASE_URL = httpserver.url_for("/").rstrip("/")
    return httpserver


@pytest.fixture(name="snapshot_prices")
def snapshot_prices_fixture():
    """The shipped snapshot's Mistral prices, imported the way `import_prices` does."""
    prices_import(data=load_price_file(), kinds=[KIND])


# --- the shipped snapshot ---------------------------------------------------------------------


def test_it_reads_its_prices_from_the_shipped_snapshot():
    rules = price_rules_from_file(load_price_file())

    assert rules[(KIND, "mistral-small-latest")] == SMALL
    assert rules[(KIND, "mistral-embed")].input_per_token == Decimal("0.0000001")


# --- through the proxy, with the official openai SDK --------------------------------------------


@live
def test_it_forwards_a_chat_call_and_records_its_snapshot_cost(
    live_server, upstream, snapshot_prices
):
    account, raw = connect(KIND)
    upstream.expect_request("/v1/chat/completions", method="POST").respond_with_json(
        CHAT, headers={"ratelimitbysize-remaining": "499000", "x-ratelimitbysize-limit-month": "9"}
    )
    client = openai_client(live_server, KIND, raw)

    reply = client.chat.completions.with_raw_response.create(
        model="mistral-small-latest", messages=MESSAGES
    )

    assert reply.parse().usage.prompt_tokens == 1013
    assert reply.headers["ratelimitbysize-remaining"] == "499000"  # its rate limits handed back
    assert reply.headers["x-ratelimitbysize-limit-month"] == "9"
    (sent,) = received(upstream, "/v1/chat/completions")
    assert sent.headers["Authorization"] == f"Bearer {PROVIDER_KEY}"
    assert_no_ingest_key_forwarded(sent, raw)
    assert sent.get_json() == {"model": "mistral-small-latest", "messages": MESSAGES}
    record = only_record(account)
    assert (record.status, record.request_id) == (RecordStatus.OK, CHAT["id"])
    assert (record.input_tokens, record.cache_read_tokens, record.output_tokens) == (5, 1008, 30)
    # 5 × $0.15/M = 0.00000075; 1008 × $0.015/M = 0.00001512; 30 × $0.60/M = 0.000018
    # 0.00000075 + 0.00001512 + 0.000018 = 0.00003387
    assert record.cost == Decimal("0.00003387")


@live
def test_it_streams_without_adding_stream_options_and_reads_the_final_chunk(
    live_server, upstream, finished, snapshot_prices
):
    account, raw = connect(KIND)
    upstream.expect_request("/v1/chat/completions").respond_with_handler(streamed(STREAM))
    client = openai_client(live_server, KIND, raw)

    chunks = list(
        client.chat.completions.create(model="mistral-small-latest", messages=MESSAGES, stream=True)
    )

    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Bonjour"
    assert chunks[-1].usage.completion_tokens == 2
    (sent,) = received(upstream, "/v1/chat/completions")
    # Mistral rejects unknown fields (422 extra_forbidden) and sends usage unasked.
    assert sent.get_json() == {
        "model": "mistral-small-latest",
        "messages": MESSAGES,
        "stream": True,
    }
    (record,) = records_after(finished, account)
    assert (record.status, record.request_id) == (RecordStatus.OK, "cmpl-stream-mistral-1")
    assert (record.input_tokens, record.cache_read_tokens, record.output_tokens) == (801, 0, 2)
    # 801 × $0.15/M = 0.00012015; 2 × $0.60/M = 0.0000012; sum 0.00012135
    assert record.cost == Decimal("0.00012135")


@live
def test_it_records_embeddings_and_passes_the_model_list_through_unrecorded(
    live_server, upstream, snapshot_prices
):
    account, raw = connect(KIND)
    upstream.expect_request("/v1/embeddings").respond_with_json(
        {
            "id": "embd-1",
            "object": "list",
            "model": "mistral-embed",
            "data": [{"object": "embedding", "index": 0, "embedding": [0.25, -0.5]}],
            "usage": {"prompt_tokens": 120, "completion_tokens": 0, "total_tokens": 120},
        }
    )
    upstream.expect_request("/v1/models", method="GET").respond_with_json(
        {"object": "list", "data": [{"id": "mistral-small-latest", "object": "model"}]}
    )
    client = openai_client(live_server, KIND, raw)

    embedded = client.embeddings.create(model="mistral-embed", input=["Bonjour"])
    models = client.models.list()

    assert embedded.data[0].embedding == [0.25, -0.5]
    assert [m.id for m in models] == ["mistral-small-latest"]
    (sent,) = received(upstream, "/v1/models")
    assert sent.headers["Authorization"] == f"Bearer {PROVIDER_KEY}"
    record = only_record(account)  # the model list is not a billed call
    assert (record.model, record.input_tokens, record.output_tokens) == ("mistral-embed", 120, 0)
    assert record.cost == Decimal("0.000012")  # 120 × $0.10/M


@live
def test_it_records_an_unpriced_model_as_unpriced_not_free(live_server, upstream):
    account, raw = connect(KIND)  # no price rows at all
    upstream.expect_request("/v1/chat/completions").respond_with_json(
        {**CHAT, "model": "mistral-tomorrow-2612"}
    )

    openai_client(live_server, KIND, raw).chat.completions.create(
        model="mistral-tomorrow-2612", messages=MESSAGES
    )

    record = only_record(account)
    assert (record.status, record.input_tokens, record.output_tokens) == (RecordStatus.OK, 5, 30)
    assert record.cost is None


# --- the ingestion API ------------------------------------------------------------------------


@live  # transactional like its neighbours: see the module docstring
def test_the_ingestion_api_accepts_a_whole_body_and_a_final_stream_chunk(client, snapshot_prices):
    account = AccountFactory(provider=provider(KIND))
    raw, _ = ingest_key_create(account=account)
    final_chunk = json.loads(STREAM[-2].removeprefix(b"data: "))
    events = [
        {"request_id": "whole", "usage": CHAT},
        {"request_id": "streamed", **final_chunk},
    ]

    response = client.post(
        "/api/usage/events",
        data=json.dumps(events),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {raw}",
    )

    assert response.json()["created"] == 2, response.json()
    whole = UsageRecord.objects.get(account=account, request_id="whole")
    assert (whole.input_tokens, whole.cache_read_tokens, whole.output_tokens) == (5, 1008, 30)
    assert whole.cost == Decimal("0.00003387")  # as worked in the proxy test above
    streamed_record = UsageRecord.objects.get(account=account, request_id="streamed")
    assert streamed_record.model == "mistral-small-latest"
    assert streamed_record.cost == Decimal("0.00012135")  # 801 × $0.15/M + 2 × $0.60/M


# --- usage and cost, worked by hand -----------------------------------------------------------


def usage_of(**extra) -> dict:
    return {"model": "mistral-small-latest", "usage": {"prompt_tokens": 801, **extra}}


@pytest.mark.parametrize(
    "extra",
    [
        {"prompt_tokens_details": {"cached_tokens": 768}},  # Mistral's prompt-caching docs
        {"prompt_token_details": {"cached_tokens": 768}},  # the SDK schema's other spelling
        {"num_cached_tokens": 768},  # the SDK schema's top-level count
        # The same cache hit reported in two places is still 768 cached tokens, not 1536.
        {"prompt_tokens_details": {"cached_tokens": 768}, "num_cached_tokens": 768},
    ],
)
def test_it_reads_the_cached_count_wherever_mistral_puts_it(extra):
    usage = extract_usage(KIND, usage_of(completion_tokens=2, **extra))

    assert (usage.input_tokens, usage.cache_read_tokens, usage.output_tokens) == (33, 768, 2)
    # 33 × $0.15/M = 0.00000495; 768 × $0.015/M = 0.00001152; 2 × $0.60/M = 0.0000012
    # 0.00000495 + 0.00001152 + 0.0000012 = 0.00001767
    assert cost_for(KIND, usage, SMALL) == Decimal("0.00001767")


def test_it_prefers_the_documented_field_when_the_counts_disagree():
    usage = extract_usage(
        KIND, usage_of(prompt_tokens_details={"cached_tokens": 512}, num_cached_tokens=768)
    )
    assert (usage.input_tokens, usage.cache_read_tokens) == (289, 512)  # 801 - 512 = 289


def test_it_refuses_more_cached_tokens_than_prompt_tokens():
    with pytest.raises(ValueError, match="usage.prompt_tokens"):
        extract_usage(KIND, usage_of(num_cached_tokens=900))


def test_it_names_the_field_mistral_sent_when_a_count_is_bad():
    with pytest.raises(ValueError, match="usage.num_cached_tokens"):
        extract_usage(KIND, usage_of(num_cached_tokens=-1))


def test_it_leaves_an_unpriced_model_unpriced():
    usage = extract_usage(KIND, usage_of(completion_tokens=2))
    assert cost_for(KIND, usage, None) is None


# --- connection test ---------------------------------------------------------------------------


def test_it_tests_a_key_by_listing_models(httpserver):
    httpserver.expect_request("/v1/models").respond_with_json(
        {"object": "list", "data": [{"id": "mistral-small-latest"}, {"id": "mistral-embed"}]}
    )
    adapter = MistralAdapter(base_url=httpserver.url_for("/v1"), secret="mk-test", config={})

    assert adapter.test_connection() == "Connected to Mistral (2 models available)"
    (request, _) = httpserver.log[0]
    assert request.path == "/v1/models"  # the pasted /v1 is not doubled
    assert request.headers["Authorization"] == "Bearer mk-test"


def test_it_reports_a_rejected_key_without_showing_it(httpserver):
    key = "mk-secret-0123456789abcdef"
    httpserver.expect_request("/v1/models").respond_with_json(
        {"object": "error", "message": f"Unauthorized: {key}", "type": "invalid_request_error"},
        status=401,
    )
    adapter = MistralAdapter(base_url=httpserver.url_for(""), secret=key, config={})

    with pytest.raises(ProviderError) as info:
        adapter.test_connection()

    assert (info.value.message, info.value.permanent) == ("key rejected (401)", True)
    assert len(httpserver.log) == 1  # permanent: not retried
    error = info.value
    assert key not in f"{error} {error.detail} {error.body_excerpt}"


def test_it_defaults_to_the_public_api():
    assert MistralAdapter(base_url="", secret="k", config={}).base_url == "https://api.mistral.ai"
