"""DeepSeek: cache hit/miss input, reasoning, the shipped prices, the proxy (official `openai`
SDK, both URL layouts, streamed with keep-alive comments), the ingestion API, the balance check.

Rates are the shipped snapshot's deepseek-reasoner / deepseek-chat row: $0.28/M cache-miss
input, $0.028/M cache-hit input, $0.42/M output (no reasoning rate: reasoning is output).
Every expected figure is worked out by hand beside it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import openai
import pytest
import requests
from werkzeug import Response

from providers.adapters.deepseek import DeepSeekAdapter
from providers.http import ProviderError
from providers.tests.factories import provider
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
from usage.extraction import extract_usage
from usage.models import RecordStatus, UsageRecord
from usage.pricing import Price, cost_for, litellm_to_prices
from usage.services.prices import PriceBook, load_price_file, prices_import

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "deepseek"
D = Decimal
# The shipped snapshot's rates for deepseek-chat and deepseek-reasoner (checked below).
MISS, HIT, OUT = D("0.00000028"), D("0.000000028"), D("0.00000042")
SNAPSHOT_RATES = Price(input_per_token=MISS, cache_read_per_token=HIT, output_per_token=OUT)
# 58 miss × $0.28/M = 0.00001624; 1152 hit × $0.028/M = 0.000032256;
# 340 out (310 of it reasoning) × $0.42/M = 0.0001428; sum 0.000191296
REASONER_COST = D("0.000191296")
STREAM = (FIXTURES / "stream_reasoner.sse").read_bytes()
TRANSACTIONAL = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def body(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text(), parse_float=Decimal)


def usage_of(**fields) -> dict:
    return {"model": "deepseek-chat", "usage": fields}


def sse_chunks(data: bytes) -> list[bytes]:
    """The stream as the provider sends it: one write per event (comments included)."""
    return [part + b"\n\n" for part in data.split(b"\n\n") if part] + [b"\n"]


def streamed(chunks: list[bytes]):
    def handler(request):
        return Response(iter(chunks), mimetype="text/event-stream")

    return handler


def snapshot_prices():
    """The shipped snapshot's DeepSeek rows, as `import_prices` loads them."""
    prices_import(data=load_price_file(), kinds={"deepseek"})


@pytest.fixture(name="client_for")
def client_for_fixture(live_server):
    """An official SDK client on the proxy (DeepSeek's root layout, or /v1), closed after the
    test so no connection is left for the garbage collector."""
    made: list[openai.OpenAI] = []

    def client_for(raw: str, suffix: str = "") -> openai.OpenAI:
        made.append(openai_client(live_server, "deepseek", raw, suffix=suffix))
        return made[-1]

    yield client_for
    for client in made:
        client.close()


@pytest.fixture(name="upstream")
def upstream_fixture(settings, httpserver):
    settings.DEEPSEEK_BASE_URL = httpserver.url_for("/").rstrip("/")
    return httpserver


# --- usage extraction -----------------------------------------------------------------------


def test_it_reads_cache_hit_and_miss_and_reasoning():
    usage = extract_usage("deepseek", body("chat_reasoner.json"))

    assert (usage.model, usage.response_id) == (
        "deepseek-reasoner",
        "48ad6b6e-b2f7-4059-b9cf-aa5d966f8f22",
    )
    assert (usage.input_tokens, usage.cache_read_tokens) == (58, 1152)  # 1210 = 1152 + 58
    assert (usage.output_tokens, usage.reasoning_tokens) == (340, 310)  # reasoning inside


def test_it_prefers_hit_and_miss_over_cached_tokens():
    # hit/miss are what the bill is made of; a disagreeing cached_tokens copy is not used.
    usage = extract_usage(
        "deepseek",
        usage_of(
            prompt_tokens=1000,
            completion_tokens=10,
            prompt_cache_hit_tokens=640,
            prompt_cache_miss_tokens=360,
            prompt_tokens_details={"cached_tokens": 512},
        ),
    )

    assert (usage.input_tokens, usage.cache_read_tokens) == (360, 640)


def test_it_reads_hit_and_miss_without_prompt_tokens_details():
    # Older responses carry only DeepSeek's own fields: the hits must still be cache reads.
    usage = extract_usage(
        "deepseek",
        usage_of(
            prompt_tokens=2000,
            completion_tokens=100,
            prompt_cache_hit_tokens=1500,
            prompt_cache_miss_tokens=500,
        ),
    )

    assert (usage.input_tokens, usage.cache_read_tokens, usage.output_tokens) == (500, 1500, 100)


@pytest.mark.parametrize(
    "fields",
    [
        {"prompt_cache_hit_tokens": 1500},  # miss = 2000 - 1500
        {"prompt_cache_miss_tokens": 500},  # hit = 2000 - 500
    ],
)
def test_it_takes_the_rest_of_the_prompt_when_one_half_is_missing(fields):
    usage = extract_usage("deepseek", usage_of(prompt_tokens=2000, completion_tokens=1, **fields))

    assert (usage.input_tokens, usage.cache_read_tokens) == (500, 1500)


def test_it_falls_back_to_cached_tokens_without_hit_and_miss():
    usage = extract_usage(
        "deepseek",
        usage_of(
            prompt_tokens=1000, completion_tokens=5, prompt_tokens_details={"cached_tokens": 1}
        ),
    )

    assert (usage.input_tokens, usage.cache_read_tokens) == (999, 1)


def test_it_refuses_a_hit_larger_than_the_prompt():
    with pytest.raises(ValueError, match="prompt_tokens"):
        extract_usage(
            "deepseek",
            usage_of(prompt_tokens=10, completion_tokens=1, prompt_cache_hit_tokens=11),
        )


# --- prices -----------------------------------------------------------------------------------


def test_the_snapshots_bare_and_prefixed_entries_agree_on_every_rate_we_use():
    # LiteLLM lists e.g. both "deepseek-chat" and "deepseek/deepseek-chat"; stripping the
    # prefix lands both on one name, so whichever comes last wins. That is harmless only while
    # they agree: a snapshot re-cut where they differ must fail here, not price at random.
    data = load_price_file()
    entries = {k: v for k, v in data.items() if v.get("litellm_provider") == "deepseek"}
    pairs = [k for k in entries if not k.startswith("deepseek/") and f"deepseek/{k}" in entries]
    assert {"deepseek-chat", "deepseek-reasoner"} <= set(pairs)
    for bare in pairs:
        (one,) = litellm_to_prices({bare: entries[bare]}).values()
        (other,) = litellm_to_prices({f"deepseek/{bare}": entries[f"deepseek/{bare}"]}).values()
        for rate in ("input_per_token", "cache_read_per_token", "output_per_token"):
            assert getattr(one, rate) == getattr(other, rate), f"{bare}.{rate}"
        assert one.reasoning_per_token is other.reasoning_per_token is None


@pytest.mark.django_db
@pytest.mark.parametrize(
    "model", ["deepseek-chat", "deepseek-reasoner", "deepseek/deepseek-reasoner"]
)
def test_the_shipped_snapshot_prices_its_models_through_the_price_book(model):
    snapshot_prices()

    rule = PriceBook().rule_for(
        provider=provider("deepseek"), model=model, at=datetime(2026, 12, 6, tzinfo=UTC)
    )

    assert rule is not None, model
    assert (rule.input_per_token, rule.cache_read_per_token, rule.output_per_token) == (
        MISS,  # $0.28/M
        HIT,  # $0.028/M
        OUT,  # $0.42/M
    )
    assert rule.reasoning_per_token is None  # reasoning is billed as output


@pytest.mark.django_db
def test_it_prices_a_reasoner_call_at_the_shipped_rates():
    snapshot_prices()
    usage = extract_usage("deepseek", body("chat_reasoner.json"))
    rule = PriceBook().rule_for(
        provider=provider("deepseek"), model=usage.model, at=datetime(2026, 12, 6, tzinfo=UTC)
    )

    # 58 × 0.00000028 + 1152 × 0.000000028 + 340 × 0.00000042
    # = 0.00001624 + 0.000032256 + 0.0001428 = 0.000191296
    assert cost_for("deepseek", usage, rule) == REASONER_COST


def test_it_prices_reasoning_apart_when_the_price_book_has_a_reasoning_rate():
    usage = extract_usage("deepseek", body("chat_reasoner.json"))
    rule = Price(
        input_per_token=MISS,
        cache_read_per_token=HIT,
        output_per_token=OUT,
        reasoning_per_token=D("0.000001"),  # an operator's made-up $1/M, for the arithmetic
    )

    # 58 × 0.28/M = 0.00001624; 1152 × 0.028/M = 0.000032256;
    # (340 - 310) = 30 visible out × 0.42/M = 0.0000126; 310 reasoning × 1/M = 0.00031
    # sum 0.00001624 + 0.000032256 + 0.0000126 + 0.00031 = 0.000371096
    assert cost_for("deepseek", usage, rule) == D("0.000371096")


def test_an_unpriced_model_costs_none_not_zero():
    usage = extract_usage("deepseek", body("chat_reasoner.json"))

    assert cost_for("deepseek", usage, None) is None


# --- through the proxy, with the official openai SDK ------------------------------------------


@TRANSACTIONAL
@pytest.mark.parametrize("suffix", ["", "v1"])  # DeepSeek's own base URL, and the /v1 one
def test_it_proxies_a_chat_call_in_either_layout(upstream, suffix, client_for):
    snapshot_prices()
    account, raw = connect("deepseek")
    upstream.expect_request("/chat/completions", method="POST").respond_with_json(
        body("chat_reasoner.json")
    )
    client = client_for(raw, suffix)

    reply = client.chat.completions.create(model="deepseek-reasoner", messages=MESSAGES)

    assert reply.choices[0].message.content == "4"
    assert reply.usage.completion_tokens_details.reasoning_tokens == 310
    (sent,) = received(upstream, "/chat/completions")
    assert sent.headers["Authorization"] == f"Bearer {PROVIDER_KEY}"
    assert_no_ingest_key_forwarded(sent, raw)
    record = only_record(account)
    assert (record.status, record.model) == (RecordStatus.OK, "deepseek-reasoner")
    assert (record.input_tokens, record.cache_read_tokens) == (58, 1152)
    assert (record.output_tokens, record.reasoning_tokens) == (340, 310)
    assert record.cost == REASONER_COST  # 0.00001624 + 0.000032256 + 0.0001428, as above


@TRANSACTIONAL
def test_blank_lines_before_a_whole_body_change_nothing(upstream, client_for):
    # Under load DeepSeek sends blank lines while a non-streamed answer is being prepared.
    snapshot_prices()
    account, raw = connect("deepseek")
    text = b"\n\n\n" + (FIXTURES / "chat_reasoner.json").read_bytes()
    upstream.expect_request("/chat/completions").respond_with_data(
        text, content_type="application/json"
    )
    client = client_for(raw)

    reply = client.chat.completions.create(model="deepseek-reasoner", messages=MESSAGES)

    assert reply.usage.prompt_tokens == 1210
    record = only_record(account)
    assert (record.status, record.cost) == (RecordStatus.OK, REASONER_COST)  # as above


@TRANSACTIONAL
def test_it_streams_with_keep_alive_comments_and_forces_the_usage_chunk(
    upstream, finished, client_for
):
    snapshot_prices()
    account, raw = connect("deepseek")
    upstream.expect_request("/chat/completions").respond_with_handler(streamed(sse_chunks(STREAM)))
    client = client_for(raw)

    chunks = list(
        client.chat.completions.create(model="deepseek-reasoner", messages=MESSAGES, stream=True)
    )

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "4"
    assert chunks[-1].usage.prompt_tokens == 1210
    (sent,) = received(upstream, "/chat/completions")
    assert sent.get_json()["stream_options"] == {"include_usage": True}  # added by the proxy
    (record,) = records_after(finished, account)
    assert (record.status, record.request_id) == (
        RecordStatus.OK,
        "0f5e7f1c-2a4b-4c1e-9d3a-6b7c8d9e0f11",
    )
    assert (record.input_tokens, record.cache_read_tokens) == (58, 1152)
    assert (record.output_tokens, record.reasoning_tokens) == (340, 310)
    assert record.cost == REASONER_COST  # 0.00001624 + 0.000032256 + 0.0001428, as above


@TRANSACTIONAL
def test_it_passes_keep_alive_comments_on_byte_for_byte(live_server, upstream):
    account, raw = connect("deepseek")
    upstream.expect_request("/chat/completions").respond_with_handler(streamed(sse_chunks(STREAM)))

    with requests.post(
        f"{live_server.url}/proxy/deepseek/v1/chat/completions",
        headers={"Authorization": f"Bearer {raw}"},
        json={"model": "deepseek-reasoner", "messages": MESSAGES, "stream": True},
        stream=True,
        timeout=10,
    ) as response:
        assert response.status_code == 200
        assert b"".join(response.iter_content(chunk_size=None)) == b"".join(sse_chunks(STREAM))
    record = only_record(account)  # committed before the last byte
    assert (record.status, record.input_tokens, record.cache_read_tokens) == (
        RecordStatus.OK,
        58,
        1152,
    )
    assert record.cost is None  # no DeepSeek prices loaded in this test: unpriced, not $0


@TRANSACTIONAL
@pytest.mark.parametrize("path", ["models", "v1/models"])
def test_it_passes_the_model_list_through_without_a_record(live_server, upstream, path):
    account, raw = connect("deepseek")
    models = {"object": "list", "data": [{"id": "deepseek-chat", "object": "model"}]}
    upstream.expect_request("/models", method="GET").respond_with_json(models)

    reply = requests.get(
        f"{live_server.url}/proxy/deepseek/{path}",
        headers={"Authorization": f"Bearer {raw}"},
        timeout=10,
    )

    assert (reply.status_code, reply.json()) == (200, models)
    assert not UsageRecord.objects.filter(account=account).exists()


# --- the ingestion API ------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_ingestion_api_accepts_a_whole_body_and_a_streams_final_chunk(client):
    snapshot_prices()
    account, raw = connect("deepseek")
    final = next(
        json.loads(line[6:], parse_float=Decimal)
        for line in STREAM.splitlines()
        if line.startswith(b"data: {") and b'"usage": {' in line
    )
    events = [
        {"request_id": "whole", "usage": body("chat_reasoner.json")},
        {"request_id": "streamed", **final},  # the event itself is the final chunk
    ]

    answer = client.post(
        "/api/usage/events",
        data=json.dumps(events, default=str),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {raw}",
    ).json()

    assert answer["created"] == 2, answer
    for record in UsageRecord.objects.filter(account=account):
        assert record.model == "deepseek-reasoner"
        assert (record.input_tokens, record.cache_read_tokens) == (58, 1152)
        assert (record.output_tokens, record.reasoning_tokens) == (340, 310)
        assert record.cost == REASONER_COST  # 0.00001624 + 0.000032256 + 0.0001428


@pytest.mark.django_db
def test_the_ingestion_api_leaves_an_unknown_model_unpriced(client):
    snapshot_prices()
    account, raw = connect("deepseek")
    unknown = {**body("chat_reasoner.json"), "model": "deepseek-v9-preview"}

    answer = client.post(
        "/api/usage/events",
        data=json.dumps([{"request_id": "u1", "usage": unknown}], default=str),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {raw}",
    ).json()

    assert answer["created"] == 1, answer
    assert only_record(account).cost is None  # unpriced, never $0


# --- connection test: the balance -------------------------------------------------------------


def test_it_tests_a_key_by_reading_the_balance(httpserver):
    httpserver.expect_request("/user/balance").respond_with_data(
        (FIXTURES / "balance.json").read_text(), content_type="application/json"
    )
    adapter = DeepSeekAdapter(base_url=httpserver.url_for("/v1"), secret="sk-ds-test", config={})

    message = adapter.test_connection()

    # The balances are strings on the wire: shown as sent, as Decimals, never via float.
    assert message == "Connected to DeepSeek (balance 110.00 CNY, 2.50 USD)"
    (request, _) = httpserver.log[0]
    assert request.path == "/user/balance"  # a pasted /v1 is stripped
    assert request.headers["Authorization"] == "Bearer sk-ds-test"


def test_it_says_when_the_balance_is_too_low(httpserver):
    httpserver.expect_request("/user/balance").respond_with_json(
        {
            "is_available": False,
            "balance_infos": [
                {
                    "currency": "USD",
                    "total_balance": "0.00",
                    "granted_balance": "0.00",
                    "topped_up_balance": "0.00",
                }
            ],
        }
    )
    adapter = DeepSeekAdapter(base_url=httpserver.url_for(""), secret="sk-ds-test", config={})

    assert adapter.test_connection() == (
        "Connected to DeepSeek (balance 0.00 USD); the balance is too low for API calls"
    )


def test_a_rejected_key_is_a_permanent_error_without_the_key(httpserver):
    secret = "sk-deepseek-rejected-0001"
    text = (FIXTURES / "error_401.json").read_text().replace("****0001", secret)
    httpserver.expect_request("/user/balance").respond_with_data(
        text, status=401, content_type="application/json"
    )
    adapter = DeepSeekAdapter(base_url=httpserver.url_for(""), secret=secret, config={})

    with pytest.raises(ProviderError) as info:
        adapter.test_connection()

    assert (info.value.message, info.value.permanent) == ("key rejected (401)", True)
    error = info.value
    for shown in (str(error), error.detail or "", error.body_excerpt or "", repr(error)):
        assert secret not in shown
    assert len(httpserver.log) == 1  # permanent: not retried


def test_it_defaults_to_the_public_api():
    adapter = DeepSeekAdapter(base_url="", secret="k", config={})

    assert adapter.base_url == "https://api.deepseek.com"
