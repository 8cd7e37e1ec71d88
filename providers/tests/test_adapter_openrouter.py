"""OpenRouter: its own usage.cost as the cost, vendor/model names kept as sent, cached and
reasoning counts, the proxy (official `openai` SDK, streamed and not, a mid-stream error), the
ingestion API, the key check.

The fixture call: 1940 prompt tokens of which 1536 cache reads and 256 cache writes, 212
completion tokens of which 64 reasoning, usage.cost 0.0052188 credits (1 credit = 1 USD).
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
from django.test import RequestFactory
from werkzeug import Response

from providers.adapters.openrouter import OpenRouterAdapter
from providers.http import ProviderError
from providers.proxy.upstream import upstream_headers
from providers.tests.factories import provider
from providers.tests.test_proxy import (  # noqa: F401 - fixtures are used by name
    MESSAGES,
    PROVIDER_KEY,
    _fresh_price_cache,
    _now,
    add_price,
    assert_no_ingest_key_forwarded,
    connect,
    finished_fixture,
    only_record,
    openai_client,
    received,
    records_after,
)
from usage.extraction import extract_usage
from usage.models import Price as PriceRow
from usage.models import RecordStatus, UsageRecord
from usage.pricing import Price, cost_for
from usage.services.prices import PriceBook, load_price_file, prices_import

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "openrouter"
D = Decimal
MODEL = "anthropic/claude-sonnet-4.5"
OWN_COST = D("0.0052188")  # usage.cost as sent: 0.0052188 credits = $0.0052188
# Claude Sonnet 4.5 list rates an operator might enter for OpenRouter: $3/M in, $0.30/M cache
# read, $3.75/M cache write, $15/M out.
SONNET = {
    "input_per_token": D("0.000003"),
    "cache_read_per_token": D("0.0000003"),
    "cache_write_per_token": D("0.00000375"),
    "output_per_token": D("0.000015"),
}
# 148 uncached (1940 - 1536 - 256) × 3/M = 0.000444; 1536 × 0.30/M = 0.0004608;
# 256 × 3.75/M = 0.00096; 212 out (64 of it reasoning) × 15/M = 0.00318; sum 0.0050448
PRICE_BOOK_COST = D("0.0050448")
STREAM = (FIXTURES / "stream_sonnet.sse").read_bytes()
STREAM_ERROR = (FIXTURES / "stream_error.sse").read_bytes()
TRANSACTIONAL = pytest.mark.django_db(transaction=True, serialized_rollback=True)
AT = datetime(2026, 12, 6, tzinfo=UTC)


def body(name: str = "chat_sonnet.json") -> dict:
    return json.loads((FIXTURES / name).read_text(), parse_float=Decimal)


def without_cost(data: dict) -> dict:
    usage = {k: v for k, v in data["usage"].items() if k not in ("cost", "cost_details")}
    return {**data, "usage": usage}


def sse_chunks(data: bytes) -> list[bytes]:
    """One write per event, comments included, as the provider sends them."""
    return [part + b"\n\n" for part in data.split(b"\n\n") if part]


def streamed(chunks: list[bytes]):
    def handler(request):
        return Response(iter(chunks), mimetype="text/event-stream")

    return handler


def final_chunk(data: bytes) -> dict:
    return next(
        json.loads(line[6:], parse_float=Decimal)
        for line in data.splitlines()
        if line.startswith(b"data: {") and b'"usage"' in line
    )


def assert_fixture_counts(record) -> None:
    assert record.model == MODEL  # as sent: never "claude-sonnet-4.5" or an Anthropic name
    assert (record.input_tokens, record.cache_read_tokens, record.cache_write_tokens) == (
        148,  # 1940 - 1536 - 256
        1536,
        256,
    )
    assert (record.output_tokens, record.reasoning_tokens) == (212, 64)


def ingest(client, raw: str, events: list[dict]) -> dict:
    return client.post(
        "/api/usage/events",
        data=json.dumps(events, default=str),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {raw}",
    ).json()


@pytest.fixture(name="upstream")
def upstream_fixture(settings, httpserver):
    settings.OPENROUTER_BASE_URL = httpserver.url_for("/").rstrip("/")
    return httpserver


@pytest.fixture(name="client_for")
def client_for_fixture(live_server):
    """The README's client: base URL {tracker}/proxy/openrouter/api/v1, as with OpenRouter
    itself. Closed after the test, so no connection is left for the garbage collector."""
    made: list[openai.OpenAI] = []

    def client_for(raw: str) -> openai.OpenAI:
        made.append(openai_client(live_server, "openrouter", raw, suffix="api/v1"))
        return made[-1]

    yield client_for
    for client in made:
        client.close()


# --- usage and cost ---------------------------------------------------------------------------


def test_it_reads_counts_and_its_own_cost():
    usage = extract_usage("openrouter", body())

    assert (usage.model, usage.response_id) == (MODEL, "gen-1785600000-AbCdEfGhIjKlMnOp")
    assert (usage.input_tokens, usage.cache_read_tokens, usage.cache_write_tokens) == (
        148,  # 1940 - 1536 - 256
        1536,
        256,
    )
    assert (usage.output_tokens, usage.reasoning_tokens) == (212, 64)
    assert usage.provider_cost == OWN_COST  # exactly as sent, no float on the way


def test_its_own_cost_beats_any_price():
    usage = extract_usage("openrouter", body())

    # The price book would say 0.0050448 (worked out above); usage.cost wins.
    assert cost_for("openrouter", usage, Price(**SONNET)) == OWN_COST


def test_without_its_cost_the_price_book_prices_it():
    usage = extract_usage("openrouter", without_cost(body()))

    # 0.000444 + 0.0004608 + 0.00096 + 0.00318 = 0.0050448 (worked out above)
    assert cost_for("openrouter", usage, Price(**SONNET)) == PRICE_BOOK_COST


def test_without_its_cost_or_a_price_it_is_unpriced_not_zero():
    usage = extract_usage("openrouter", without_cost(body()))

    assert cost_for("openrouter", usage, None) is None


def test_a_free_models_zero_cost_is_a_real_zero():
    usage = extract_usage(
        "openrouter",
        {
            "model": "meta-llama/llama-3.3-70b-instruct:free",
            "usage": {"prompt_tokens": 40, "completion_tokens": 9, "cost": 0},
        },
    )

    assert cost_for("openrouter", usage, None) == D("0")  # OpenRouter charged nothing


@pytest.mark.django_db
def test_the_price_book_finds_an_operators_price_by_the_full_name_only_under_openrouter():
    add_price("openrouter", MODEL, **SONNET)
    add_price("anthropic", "claude-sonnet-4.5", input_per_token=D("1"))  # another provider's
    book = PriceBook()
    usage = extract_usage("openrouter", without_cost(body()))

    rule = book.rule_for(provider=provider("openrouter"), model=MODEL, at=AT)
    other = book.rule_for(provider=provider("openrouter"), model="openai/gpt-4o", at=AT)

    assert cost_for("openrouter", usage, rule) == PRICE_BOOK_COST  # 0.0050448, as above
    assert other is None  # no Anthropic or OpenAI row ever prices an OpenRouter call


@pytest.mark.django_db
def test_the_shipped_snapshot_has_no_openrouter_prices():
    prices_import(data=load_price_file())

    assert not PriceRow.objects.filter(provider=provider("openrouter")).exists()


# --- through the proxy, with the official openai SDK ------------------------------------------


@TRANSACTIONAL
def test_it_proxies_a_chat_call_and_records_its_own_cost(upstream, client_for):
    add_price("openrouter", MODEL, **SONNET)  # present, and still not used: usage.cost is
    account, raw = connect("openrouter")
    upstream.expect_request("/api/v1/chat/completions", method="POST").respond_with_data(
        (FIXTURES / "chat_sonnet.json").read_bytes(), content_type="application/json"
    )

    reply = client_for(raw).chat.completions.create(model=MODEL, messages=MESSAGES)

    assert reply.choices[0].message.content == "Paris."
    (sent,) = received(upstream, "/api/v1/chat/completions")
    assert sent.headers["Authorization"] == f"Bearer {PROVIDER_KEY}"
    assert sent.get_json()["model"] == MODEL
    assert_no_ingest_key_forwarded(sent, raw)
    record = only_record(account)
    assert record.status == RecordStatus.OK
    assert_fixture_counts(record)
    assert record.cost == OWN_COST  # usage.cost 0.0052188, not the book's 0.0050448


@TRANSACTIONAL
def test_it_passes_its_attribution_headers_on_and_no_other_provider_does(
    upstream, finished, client_for
):
    account, raw = connect("openrouter")
    upstream.expect_request("/api/v1/chat/completions", method="POST").respond_with_data(
        (FIXTURES / "chat_sonnet.json").read_bytes(), content_type="application/json"
    )
    attribution = {"HTTP-Referer": "https://app.example", "X-Title": "Example app"}

    client_for(raw).chat.completions.create(
        model=MODEL, messages=MESSAGES, extra_headers=attribution
    )

    assert len(records_after(finished, account)) == 1  # the server is done with the call
    (sent,) = received(upstream, "/api/v1/chat/completions")
    assert (sent.headers["HTTP-Referer"], sent.headers["X-Title"]) == tuple(attribution.values())
    request = RequestFactory().post("/", HTTP_HTTP_REFERER="https://app.example", HTTP_X_TITLE="x")
    assert "x-title" not in upstream_headers(request, kind="openai", provider_key="sk-x")
    assert "http-referer" not in upstream_headers(request, kind="openai", provider_key="sk-x")


@TRANSACTIONAL
def test_without_its_cost_a_proxied_call_is_priced_by_the_operators_price(upstream, client_for):
    add_price("openrouter", MODEL, **SONNET)
    account, raw = connect("openrouter")
    upstream.expect_request("/api/v1/chat/completions").respond_with_json(without_cost(body()))

    client_for(raw).chat.completions.create(model=MODEL, messages=MESSAGES)

    record = only_record(account)
    assert_fixture_counts(record)
    assert record.cost == PRICE_BOOK_COST  # 0.000444 + 0.0004608 + 0.00096 + 0.00318


@TRANSACTIONAL
def test_without_its_cost_or_a_price_a_proxied_call_is_unpriced(upstream, client_for):
    account, raw = connect("openrouter")
    upstream.expect_request("/api/v1/chat/completions").respond_with_json(without_cost(body()))

    client_for(raw).chat.completions.create(model=MODEL, messages=MESSAGES)

    record = only_record(account)
    assert (record.status, record.model, record.cost) == (RecordStatus.OK, MODEL, None)


@TRANSACTIONAL
def test_it_streams_and_records_the_cost_from_the_last_chunk_unasked(
    upstream, finished, client_for
):
    account, raw = connect("openrouter")
    upstream.expect_request("/api/v1/chat/completions").respond_with_handler(
        streamed(sse_chunks(STREAM))
    )

    chunks = list(
        client_for(raw).chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    )

    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Paris."
    assert chunks[-1].usage.prompt_tokens == 1940
    (sent,) = received(upstream, "/api/v1/chat/completions")
    assert "stream_options" not in sent.get_json()  # usage comes unasked: the body is left be
    (record,) = records_after(finished, account)
    assert (record.status, record.request_id) == (
        RecordStatus.OK,
        "gen-1785600001-QrStUvWxYz012345",
    )
    assert_fixture_counts(record)
    assert record.cost == OWN_COST  # the last chunk's usage.cost, 0.0052188


@TRANSACTIONAL
def test_a_clients_own_stream_options_are_passed_on_and_harmless(upstream, finished, client_for):
    account, raw = connect("openrouter")
    upstream.expect_request("/api/v1/chat/completions").respond_with_handler(
        streamed(sse_chunks(STREAM))
    )

    list(
        client_for(raw).chat.completions.create(
            model=MODEL,
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
        )
    )

    (sent,) = received(upstream, "/api/v1/chat/completions")
    assert sent.get_json()["stream_options"] == {"include_usage": True}
    (record,) = records_after(finished, account)
    assert (record.status, record.cost) == (RecordStatus.OK, OWN_COST)  # 0.0052188 as sent


@TRANSACTIONAL
def test_it_passes_the_stream_and_its_comments_on_byte_for_byte(live_server, upstream):
    account, raw = connect("openrouter")
    upstream.expect_request("/api/v1/chat/completions").respond_with_handler(
        streamed(sse_chunks(STREAM))
    )

    with requests.post(
        f"{live_server.url}/proxy/openrouter/api/v1/chat/completions",
        headers={"Authorization": f"Bearer {raw}"},
        json={"model": MODEL, "messages": MESSAGES, "stream": True},
        stream=True,
        timeout=10,
    ) as response:
        assert b"".join(response.iter_content(chunk_size=None)) == STREAM
    record = only_record(account)  # committed before the last byte
    assert (record.status, record.cost) == (RecordStatus.OK, OWN_COST)  # 0.0052188


@TRANSACTIONAL
def test_a_mid_stream_error_leaves_an_incomplete_unpriced_record(upstream, finished, client_for):
    # OpenRouter reports an upstream failure after the stream began as a chunk with `error`
    # and finish_reason "error", on HTTP 200, with no usage (providers-more.md §5).
    add_price("openrouter", MODEL, **SONNET)
    account, raw = connect("openrouter")
    upstream.expect_request("/api/v1/chat/completions").respond_with_handler(
        streamed(sse_chunks(STREAM_ERROR))
    )

    with pytest.raises(openai.APIError, match="Provider returned error"):
        list(client_for(raw).chat.completions.create(model=MODEL, messages=MESSAGES, stream=True))

    (record,) = records_after(finished, account)
    assert (record.status, record.model) == (RecordStatus.INCOMPLETE, MODEL)
    assert record.cost is None  # not a success, and no made-up $0 or price-book guess
    assert record.input_tokens == record.output_tokens == 0


@TRANSACTIONAL
def test_a_mid_stream_error_read_to_the_end_is_still_incomplete(live_server, upstream):
    # The same stream read to its [DONE] by a bare client: the stream ended normally, but no
    # usage came, so the record is not an ordinary success either.
    account, raw = connect("openrouter")
    upstream.expect_request("/api/v1/chat/completions").respond_with_handler(
        streamed(sse_chunks(STREAM_ERROR))
    )

    with requests.post(
        f"{live_server.url}/proxy/openrouter/api/v1/chat/completions",
        headers={"Authorization": f"Bearer {raw}"},
        json={"model": MODEL, "messages": MESSAGES, "stream": True},
        stream=True,
        timeout=10,
    ) as response:
        assert response.status_code == 200
        assert b"".join(response.iter_content(chunk_size=None)) == STREAM_ERROR
    record = only_record(account)
    assert (record.status, record.cost) == (RecordStatus.INCOMPLETE, None)


@TRANSACTIONAL
def test_it_records_the_completions_route_and_passes_models_through(upstream, client_for):
    account, raw = connect("openrouter")
    completion = {
        "id": "gen-1785600005-CompletionCompl01",
        "object": "text_completion",
        "model": "openai/gpt-3.5-turbo-instruct",
        "choices": [{"text": " there", "index": 0, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7, "cost": 0.000011},
    }
    models = {"data": [{"id": MODEL, "name": "Anthropic: Claude Sonnet 4.5"}]}
    upstream.expect_request("/api/v1/completions", method="POST").respond_with_json(completion)
    upstream.expect_request("/api/v1/models", method="GET").respond_with_json(models)
    client = client_for(raw)

    client.completions.create(model="openai/gpt-3.5-turbo-instruct", prompt="Hi")
    listed = client.models.list()

    assert [m.id for m in listed] == [MODEL]
    record = only_record(account)  # the model list leaves none
    assert (record.model, record.input_tokens, record.output_tokens) == (
        "openai/gpt-3.5-turbo-instruct",  # as sent, not OpenAI's "gpt-3.5-turbo-instruct"
        5,
        2,
    )
    assert record.cost == D("0.000011")  # its usage.cost


# --- the ingestion API ------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_ingestion_api_accepts_a_whole_body_and_a_streams_final_chunk(client):
    account, raw = connect("openrouter")
    events = [
        {"request_id": "whole", "usage": body()},
        {"request_id": "streamed", **final_chunk(STREAM)},  # the event is the final chunk
    ]

    answer = ingest(client, raw, events)

    assert answer["created"] == 2, answer
    for record in UsageRecord.objects.filter(account=account):
        assert_fixture_counts(record)
        assert record.cost == OWN_COST  # usage.cost 0.0052188, exactly


@pytest.mark.django_db
def test_the_ingestion_api_prices_a_body_without_cost_or_leaves_it_unpriced(client):
    account, raw = connect("openrouter")
    add_price("openrouter", MODEL, **SONNET)
    other = {**without_cost(body()), "model": "mistralai/mistral-large"}
    events = [
        {"request_id": "priced", "usage": without_cost(body())},
        {"request_id": "unpriced", "usage": other},
    ]

    answer = ingest(client, raw, events)

    assert answer["created"] == 2, answer
    records = {r.request_id: r for r in UsageRecord.objects.filter(account=account)}
    assert records["priced"].cost == PRICE_BOOK_COST  # 0.0050448, worked out above
    assert records["unpriced"].model == "mistralai/mistral-large"
    assert records["unpriced"].cost is None  # no price for it: unpriced, never $0


# --- connection test: the key -----------------------------------------------------------------


def test_it_tests_a_key_and_shows_its_label_and_limit(httpserver):
    httpserver.expect_request("/api/v1/key").respond_with_data(
        (FIXTURES / "key.json").read_text(), content_type="application/json"
    )
    adapter = OpenRouterAdapter(
        base_url=httpserver.url_for("/api/v1"), secret="sk-or-v1-test", config={}
    )

    message = adapter.test_connection()

    # Figures as sent (JSON numbers read as Decimal, never through a float).
    assert message == (
        'Connected to OpenRouter (key "sk-or-v1-e9c...0b2", limit $25, $12.4811812 left, '
        "$12.5188188 used)"
    )
    (request, _) = httpserver.log[0]
    assert request.path == "/api/v1/key"  # a pasted /api/v1 is stripped, not doubled
    assert request.headers["Authorization"] == "Bearer sk-or-v1-test"


def test_it_says_when_a_key_has_no_limit_and_never_shows_the_key(httpserver):
    secret = "sk-or-v1-0123456789abcdef0123456789abcdef"
    httpserver.expect_request("/api/v1/key").respond_with_json(
        {"data": {"label": secret, "limit": None, "usage": 0, "is_free_tier": True}}
    )
    adapter = OpenRouterAdapter(base_url=httpserver.url_for(""), secret=secret, config={})

    message = adapter.test_connection()

    assert message == 'Connected to OpenRouter (key "[redacted]", no credit limit, $0 used)'


def test_a_rejected_key_is_a_permanent_error_without_the_key(httpserver):
    secret = "sk-or-v1-rejected-0123456789abcdef"
    echo = {"error": {"message": f"No auth credentials found for {secret}", "code": 401}}
    httpserver.expect_request("/api/v1/key").respond_with_json(echo, status=401)
    adapter = OpenRouterAdapter(base_url=httpserver.url_for(""), secret=secret, config={})

    with pytest.raises(ProviderError) as info:
        adapter.test_connection()

    error = info.value
    assert (error.message, error.permanent) == ("key rejected (401)", True)
    for shown in (str(error), error.detail or "", error.body_excerpt or "", repr(error)):
        assert secret not in shown
    assert len(httpserver.log) == 1  # permanent: not retried


def test_it_defaults_to_the_public_api():
    adapter = OpenRouterAdapter(base_url="", secret="k", config={})

    assert adapter.base_url == "https://openrouter.ai"
