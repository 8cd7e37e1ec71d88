"""Google Gemini: connection test, usage from usageMetadata and from the OpenAI-compatible
endpoint, hand-worked costs, the proxy through google-genai (native API) and openai
(OpenAI-compatible endpoint), streaming and not, and the ingestion API.

Every expected figure is worked out by hand in the comment beside it. Prices are those of the
shipped snapshot for gemini-2.5-flash (LiteLLM "gemini/gemini-2.5-flash"): $0.30/M input,
$0.03/M cached input, $2.50/M output and $2.50/M reasoning.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import requests
from django.core.management import call_command
from google import genai
from google.genai import types

from providers.adapters.gemini import GeminiAdapter
from providers.http import ErrorClass, ProviderError
from providers.models import Provider
from providers.services import ingest_key_create
from providers.tests.factories import AccountFactory, provider
from providers.tests.test_proxy import (  # noqa: F401 - fixtures are used by name
    PROVIDER_KEY,
    _fresh_price_cache,
    _now,
    add_price,
    assert_no_ingest_key_forwarded,
    connect,
    finished_fixture,
    openai_client,
    records_after,
)
from providers.tests.test_proxy_streaming import streamed
from usage.extraction import StreamUsageTracker, extract_usage
from usage.models import RecordStatus, UsageRecord
from usage.pricing import Price, cost_for
from usage.services.prices import PriceBook

FIXTURES = Path(__file__).parent / "fixtures" / "gemini"
KIND = "gemini"
MODEL = "gemini-2.5-flash"
D = Decimal
PER_M = D("0.000001")
FLASH = Price(
    input_per_token=D("0.30") * PER_M,
    cache_read_per_token=D("0.03") * PER_M,
    output_per_token=D("2.50") * PER_M,
    reasoning_per_token=D("2.50") * PER_M,
)


def body(name: str):
    return json.loads((FIXTURES / name).read_text(), parse_float=Decimal)


def sse(events: list[dict]) -> list[bytes]:
    """One chunk per event, framed as the Gemini API frames them (CRLF)."""
    return [f"data: {json.dumps(event)}\r\n\r\n".encode() for event in events]


def openai_sse(events: list[dict]) -> list[bytes]:
    return [f"data: {json.dumps(e)}\n\n".encode() for e in events] + [b"data: [DONE]\n\n"]


# --- connection test --------------------------------------------------------------------------


def test_it_tests_a_key_by_listing_models(httpserver):
    httpserver.expect_request("/v1beta/models").respond_with_json(body("models.json"))
    adapter = GeminiAdapter(base_url=httpserver.url_for(""), secret="AIza-test-key-0001", config={})

    assert adapter.test_connection() == "Connected to Google Gemini (2 models available)"

    (request, _) = httpserver.log[0]
    assert request.headers["x-goog-api-key"] == "AIza-test-key-0001"
    assert "key" not in request.args  # never in the URL, where access logs keep it
    assert "Authorization" not in request.headers


def test_it_accepts_a_base_url_with_the_version_pasted_in(httpserver):
    httpserver.expect_request("/v1beta/models").respond_with_json(body("models.json"))
    base = httpserver.url_for("/v1beta")
    GeminiAdapter(base_url=base, secret="AIza-test-key-0001", config={}).test_connection()
    assert httpserver.log[0][0].path == "/v1beta/models"


def test_it_defaults_to_the_public_api():
    adapter = GeminiAdapter(base_url="", secret="k", config={})
    assert adapter.base_url == "https://generativelanguage.googleapis.com"


def test_it_reports_a_rejected_key_clearly_and_permanently_without_the_key(httpserver):
    # The fake echoes the key, which the real API does not: it must not come back anyway.
    secret = "AIzaSyTHISisNOTaREALkeyButLongEnough123"
    error = body("error_400_key.json")
    error["error"]["message"] += f" (got {secret})"
    httpserver.expect_request("/v1beta/models").respond_with_json(error, status=400)
    adapter = GeminiAdapter(base_url=httpserver.url_for(""), secret=secret, config={})

    with pytest.raises(ProviderError) as info:
        adapter.test_connection()

    exc = info.value
    assert (exc.message, exc.permanent, exc.status) == (
        "key rejected (400): API key not valid",
        True,
        400,
    )
    assert exc.error_class == ErrorClass.AUTH
    for text in (str(exc), exc.message, exc.detail, exc.body_excerpt):
        assert secret not in text
    assert len(httpserver.log) == 1  # permanent: not retried


@pytest.mark.parametrize("status", [401, 403])
def test_it_reports_a_refused_key_as_permanent(httpserver, status):
    httpserver.expect_request("/v1beta/models").respond_with_json(
        {"error": {"code": status, "message": "Permission denied", "status": "PERMISSION_DENIED"}},
        status=status,
    )
    adapter = GeminiAdapter(base_url=httpserver.url_for(""), secret="AIza-bad-0001", config={})

    with pytest.raises(ProviderError) as info:
        adapter.test_connection()

    assert info.value.permanent is True
    assert info.value.error_class == ErrorClass.AUTH


def test_another_400_stays_a_rejected_request(httpserver):
    httpserver.expect_request("/v1beta/models").respond_with_json(
        {"error": {"code": 400, "message": "pageSize is invalid", "status": "INVALID_ARGUMENT"}},
        status=400,
    )
    adapter = GeminiAdapter(base_url=httpserver.url_for(""), secret="AIza-x-0001", config={})

    with pytest.raises(ProviderError) as info:
        adapter.test_connection()

    assert info.value.message == "request rejected (400): pageSize is invalid"
    assert info.value.error_class == ErrorClass.CONFIG


# --- usage ------------------------------------------------------------------------------------


def test_it_reads_native_usage_metadata():
    usage = extract_usage(KIND, body("generate_content.json"))

    assert (usage.model, usage.response_id) == (MODEL, "mAitaP7bH8qV2dIP0bKa4Ag")
    assert usage.input_tokens == 216  # prompt 1240 includes the 1024 cached
    assert usage.cache_read_tokens == 1024
    assert usage.output_tokens == 90  # candidates 3 + thoughts 87
    assert usage.reasoning_tokens == 87
    assert usage.found


def test_it_adds_tool_use_prompt_tokens_to_input():
    usage = extract_usage(KIND, body("tool_use.json"))

    assert usage.input_tokens == 800  # prompt 500 + tool results 300
    assert (usage.cache_read_tokens, usage.output_tokens, usage.reasoning_tokens) == (0, 40, 0)


def test_it_reads_a_bare_usage_metadata_object():
    usage = extract_usage(KIND, {"promptTokenCount": 10, "candidatesTokenCount": 4})
    assert (usage.input_tokens, usage.output_tokens, usage.found) == (10, 4, True)


def test_it_refuses_more_cached_tokens_than_the_prompt_has():
    with pytest.raises(ValueError, match="usageMetadata.promptTokenCount"):
        extract_usage(
            KIND, {"usageMetadata": {"promptTokenCount": 10, "cachedContentTokenCount": 11}}
        )


def test_it_refuses_a_negative_count_naming_the_field():
    with pytest.raises(ValueError, match="usageMetadata.thoughtsTokenCount"):
        extract_usage(KIND, {"usageMetadata": {"thoughtsTokenCount": -1}})


def test_a_blocked_prompt_without_candidates_still_has_its_usage():
    blocked = {
        "promptFeedback": {"blockReason": "SAFETY"},
        "usageMetadata": {"promptTokenCount": 12, "totalTokenCount": 12},
        "modelVersion": MODEL,
    }
    usage = extract_usage(KIND, blocked)
    assert (usage.input_tokens, usage.output_tokens, usage.found) == (12, 0, True)


def test_a_stream_keeps_the_last_usage_and_an_event_without_it_never_erases_it():
    events = body("stream_events.json")
    tracker = StreamUsageTracker(KIND, "sse")
    for chunk in sse([*events, events[1]]):  # a trailing event without usageMetadata
        tracker.feed(chunk)

    usage = tracker.usage()

    assert (usage.model, usage.response_id) == (MODEL, "stream-r1")
    assert (usage.input_tokens, usage.cache_read_tokens) == (216, 1024)
    assert (usage.output_tokens, usage.reasoning_tokens) == (90, 87)  # 3 + 87, not the first 1


def test_it_counts_thinking_the_openai_compatible_usage_leaves_out_of_completion():
    usage = extract_usage(KIND, body("openai_chat.json"))

    assert usage.reasoning_tokens == 865  # total 1725 - prompt 758 - completion 102
    assert usage.output_tokens == 967  # completion 102 + thinking 865
    assert usage.input_tokens == 758


def test_it_reads_a_model_resource_name_as_the_model():
    compat = {**body("openai_chat.json"), "model": "models/gemini-2.5-flash"}
    native = {**body("generate_content.json"), "modelVersion": "models/gemini-2.5-flash"}
    assert extract_usage(KIND, compat).model == extract_usage(KIND, native).model == MODEL


def test_openai_compatible_usage_that_adds_up_is_read_as_it_is():
    usage = extract_usage(
        KIND,
        {
            "usage": {
                "prompt_tokens": 100,
                "completion_tokens": 50,
                "total_tokens": 150,
                "prompt_tokens_details": {"cached_tokens": 60},
                "completion_tokens_details": {"reasoning_tokens": 20},
            }
        },
    )
    assert (usage.input_tokens, usage.cache_read_tokens) == (40, 60)
    assert (usage.output_tokens, usage.reasoning_tokens) == (50, 20)


# --- costs ------------------------------------------------------------------------------------


def test_it_prices_cached_input_and_thoughts_by_hand():
    usage = extract_usage(KIND, body("generate_content.json"))

    # 216 in x $0.30/M = $0.0000648; 1024 cached x $0.03/M = $0.00003072;
    # 3 visible out x $2.50/M = $0.0000075; 87 thoughts x $2.50/M (reasoning) = $0.0002175;
    # total $0.00032052
    assert cost_for(KIND, usage, FLASH) == D("0.00032052")


def test_it_prices_tool_use_prompt_tokens_as_input_by_hand():
    usage = extract_usage(KIND, body("tool_use.json"))

    # (500 + 300) = 800 in x $0.30/M = $0.00024; 40 out x $2.50/M = $0.0001; total $0.00034
    assert cost_for(KIND, usage, FLASH) == D("0.00034")


def test_it_prices_openai_compatible_thinking_as_output_by_hand():
    usage = extract_usage(KIND, body("openai_chat.json"))

    # 758 in x $0.30/M = $0.0002274; 102 visible out x $2.50/M = $0.000255;
    # 865 thinking x $2.50/M = $0.0021625; total $0.0026449
    assert cost_for(KIND, usage, FLASH) == D("0.0026449")


def test_an_unpriced_model_costs_none_never_zero():
    usage = extract_usage(KIND, body("generate_content.json"))
    assert cost_for(KIND, usage, None) is None


@pytest.mark.django_db
def test_the_shipped_snapshot_prices_gemini_models_and_not_unknown_ones():
    call_command("import_prices")
    book = PriceBook()
    gemini = Provider.objects.get(slug=KIND)
    at = datetime(2026, 12, 6, tzinfo=UTC)

    flash = book.rule_for(provider=gemini, model=MODEL, at=at)
    pro = book.rule_for(provider=gemini, model="gemini-2.5-pro", at=at)

    assert (flash.input_per_token, flash.output_per_token) == (D("3E-7"), D("0.0000025"))
    assert flash.cache_read_per_token == D("3E-8")
    assert (pro.input_per_token, pro.output_per_token) == (D("0.00000125"), D("0.00001"))
    assert book.rule_for(provider=gemini, model="gemini-0-nonexistent", at=at) is None


# --- through the proxy ------------------------------------------------------------------------

live_db = pytest.mark.django_db(transaction=True, serialized_rollback=True)


@pytest.fixture(name="upstream")
def gemini_upstream(settings, httpserver):
    settings.GEMINI_BASE_URL = httpserver.url_for("/").rstrip("/")
    return httpserver


@pytest.fixture
def flash_price():
    return add_price(
        KIND,
        MODEL,
        input_per_token=D("0.30") * PER_M,
        cache_read_per_token=D("0.03") * PER_M,
        output_per_token=D("2.50") * PER_M,
    )


def genai_client(live_server, raw: str, **options) -> genai.Client:
    return genai.Client(
        api_key=raw,
        http_options=types.HttpOptions(
            base_url=f"{live_server.url}/proxy/{KIND}/",
            retry_options=types.HttpRetryOptions(attempts=1),
            **options,
        ),
    )


def native_call(
    live_server, raw: str, method: str, *, model: str = MODEL, query: str = ""
) -> requests.Response:
    """A curl-style call of the native API (v1beta), the ingest key in x-goog-api-key, or in
    ?key= when `query` carries it."""
    headers = {} if "key=" in query else {"x-goog-api-key": raw}
    return requests.post(
        f"{live_server.url}/proxy/{KIND}/v1beta/models/{model}:{method}{query}",
        json={"contents": [{"parts": [{"text": "Capital?"}]}]},
        headers=headers,
        timeout=30,
    )


def assert_native_record(record: UsageRecord, response_id: str) -> None:
    assert (record.model, record.request_id, record.status) == (
        MODEL,
        response_id,
        RecordStatus.OK,
    )
    assert (record.input_tokens, record.cache_read_tokens) == (216, 1024)
    assert (record.output_tokens, record.reasoning_tokens) == (90, 87)
    # 216 x $0.30/M = $0.0000648; 1024 x $0.03/M = $0.00003072; 90 x $2.50/M = $0.000225;
    # total $0.00032052
    assert record.cost == D("0.00032052")


@live_db
def test_google_genai_generates_content_through_the_proxy(
    live_server, upstream, flash_price, finished
):
    account, raw = connect(KIND)
    # The SDK's default API version is v1.
    upstream.expect_request(f"/v1/models/{MODEL}:generateContent", method="POST").respond_with_json(
        body("generate_content.json")
    )

    client = genai_client(live_server, raw)  # kept: a dropped client closes its connection

    answer = client.models.generate_content(model=MODEL, contents="Capital of France?")

    assert answer.text == "Paris."
    assert answer.usage_metadata.thoughts_token_count == 87
    (request, _) = upstream.log[0]
    assert request.headers["x-goog-api-key"] == PROVIDER_KEY
    assert "Authorization" not in request.headers
    assert_no_ingest_key_forwarded(request, raw)
    assert json.loads(request.data)["contents"][0]["parts"][0]["text"] == "Capital of France?"
    (record,) = records_after(finished, account)
    assert_native_record(record, "mAitaP7bH8qV2dIP0bKa4Ag")
    assert record.raw["usage"]["cachedContentTokenCount"] == 1024  # usageMetadata, no text


@live_db
def test_google_genai_streams_content_through_the_proxy(
    live_server, upstream, flash_price, finished
):
    account, raw = connect(KIND)
    upstream.expect_request(
        f"/v1beta/models/{MODEL}:streamGenerateContent", query_string="alt=sse"
    ).respond_with_handler(streamed(sse(body("stream_events.json"))))
    client = genai_client(live_server, raw, api_version="v1beta")

    chunks = list(client.models.generate_content_stream(model=MODEL, contents="Capital?"))

    assert "".join(chunk.text or "" for chunk in chunks) == "Paris."
    (request, _) = upstream.log[0]
    assert request.query_string == b"alt=sse"
    assert request.headers["x-goog-api-key"] == PROVIDER_KEY
    assert_no_ingest_key_forwarded(request, raw)
    (record,) = records_after(finished, account)
    assert_native_record(record, "stream-r1")


@live_db
def test_a_key_in_the_query_authenticates_and_never_reaches_the_provider(
    live_server, upstream, flash_price, finished
):
    account, raw = connect(KIND)
    upstream.expect_request(f"/v1beta/models/{MODEL}:streamGenerateContent").respond_with_handler(
        streamed(sse(body("stream_events.json")))
    )

    reply = native_call(live_server, raw, "streamGenerateContent", query=f"?alt=sse&key={raw}")

    assert reply.status_code == 200, reply.text
    assert reply.content.count(b"data: ") == 3
    (request, _) = upstream.log[0]
    assert request.query_string == b"alt=sse"  # alt forwarded, key= taken out
    assert "key" not in request.args
    assert request.headers["x-goog-api-key"] == PROVIDER_KEY
    assert_no_ingest_key_forwarded(request, raw)
    (record,) = records_after(finished, account)
    assert_native_record(record, "stream-r1")


@live_db
def test_a_key_in_the_sdk_header_works_with_curl_style_calls_too(
    live_server, upstream, flash_price, finished
):
    account, raw = connect(KIND)
    upstream.expect_request(f"/v1beta/models/{MODEL}:generateContent").respond_with_json(
        body("generate_content.json")
    )

    reply = native_call(live_server, raw, "generateContent")

    assert reply.status_code == 200, reply.text
    assert reply.json() == json.loads((FIXTURES / "generate_content.json").read_text())
    (request, _) = upstream.log[0]
    assert request.headers["x-goog-api-key"] == PROVIDER_KEY
    (record,) = records_after(finished, account)
    assert_native_record(record, "mAitaP7bH8qV2dIP0bKa4Ag")


@live_db
def test_a_stream_without_sse_arrives_as_one_json_array_and_is_recorded(
    live_server, upstream, flash_price, finished
):
    account, raw = connect(KIND)
    events = body("stream_events.json")
    upstream.expect_request(f"/v1beta/models/{MODEL}:streamGenerateContent").respond_with_data(
        json.dumps(events, default=str), content_type="application/json"
    )

    reply = native_call(live_server, raw, "streamGenerateContent")

    assert reply.status_code == 200
    assert len(reply.json()) == 3
    (record,) = records_after(finished, account)
    assert_native_record(record, "stream-r1")


@live_db
def test_a_stream_cut_before_its_finish_reason_is_incomplete(
    live_server, upstream, flash_price, finished
):
    # Usage repeats on every event, so the counts so far are kept, but the call is not whole.
    account, raw = connect(KIND)
    events = body("stream_events.json")[:2]
    upstream.expect_request(f"/v1beta/models/{MODEL}:streamGenerateContent").respond_with_handler(
        streamed(sse(events))
    )

    reply = native_call(live_server, raw, "streamGenerateContent", query="?alt=sse")

    assert reply.status_code == 200
    (record,) = records_after(finished, account)
    assert record.status == RecordStatus.INCOMPLETE
    assert (record.model, record.output_tokens) == (MODEL, 88)  # 1 candidate + 87 thoughts


@live_db
def test_a_refused_call_is_recorded_under_the_model_in_its_path_and_hides_the_key(
    live_server, upstream, finished
):
    account, raw = connect(KIND)
    # An error body that (unlike the real API) echoes the stored key.
    upstream.expect_request(f"/v1beta/models/{MODEL}:generateContent").respond_with_json(
        {"error": {"code": 400, "message": f"API key not valid: {PROVIDER_KEY}"}}, status=400
    )

    reply = native_call(live_server, raw, "generateContent")

    assert reply.status_code == 400
    assert PROVIDER_KEY not in reply.text
    (record,) = records_after(finished, account)
    assert (record.model, record.status, record.cost) == (MODEL, RecordStatus.FAILED, D(0))


@live_db
def test_an_unpriced_model_is_recorded_with_no_cost(live_server, upstream, finished):
    account, raw = connect(KIND)
    answer = {**body("tool_use.json"), "modelVersion": "gemini-0-nonexistent"}
    upstream.expect_request(
        "/v1beta/models/gemini-0-nonexistent:generateContent"
    ).respond_with_data(json.dumps(answer, default=str), content_type="application/json")

    reply = native_call(live_server, raw, "generateContent", model="gemini-0-nonexistent")

    assert reply.status_code == 200
    (record,) = records_after(finished, account)
    assert (record.model, record.input_tokens, record.cost) == ("gemini-0-nonexistent", 800, None)


@live_db
def test_openai_sdk_chat_through_the_openai_compatible_endpoint(
    live_server, upstream, flash_price, finished
):
    account, raw = connect(KIND)
    upstream.expect_request("/v1beta/openai/chat/completions").respond_with_json(
        body("openai_chat.json")
    )
    client = openai_client(live_server, KIND, raw, suffix="v1beta/openai")

    answer = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Capital of France?"}]
    )

    assert answer.choices[0].message.content == "Paris."
    (request, _) = upstream.log[0]
    assert request.headers["x-goog-api-key"] == PROVIDER_KEY
    assert_no_ingest_key_forwarded(request, raw)
    (record,) = records_after(finished, account)
    assert (record.model, record.input_tokens, record.output_tokens) == (MODEL, 758, 967)
    assert record.reasoning_tokens == 865  # 1725 - 758 - 102
    # 758 x $0.30/M = $0.0002274; (102 + 865) = 967 x $2.50/M = $0.0024175; total $0.0026449
    assert record.cost == D("0.0026449")


@live_db
def test_openai_sdk_streams_through_the_openai_compatible_endpoint(
    live_server, upstream, flash_price, finished
):
    account, raw = connect(KIND)
    upstream.expect_request("/v1beta/openai/chat/completions").respond_with_handler(
        streamed(openai_sse(body("openai_stream_chunks.json")))
    )
    client = openai_client(live_server, KIND, raw, suffix="v1beta/openai")

    stream = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Capital?"}], stream=True
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)

    assert text == "Paris."
    sent = json.loads(upstream.log[0][0].data)
    assert sent["stream_options"] == {"include_usage": True}  # asked for, so usage comes
    (record,) = records_after(finished, account)
    assert (record.request_id, record.status) == ("compat-s1", RecordStatus.OK)
    assert (record.input_tokens, record.output_tokens, record.reasoning_tokens) == (758, 967, 865)
    # as above: $0.0002274 + $0.0024175 = $0.0026449
    assert record.cost == D("0.0026449")


# --- ingestion API ----------------------------------------------------------------------------


@pytest.fixture
def ingest_key(db) -> tuple:
    add_price(
        KIND,
        MODEL,
        input_per_token=D("0.30") * PER_M,
        cache_read_per_token=D("0.03") * PER_M,
        output_per_token=D("2.50") * PER_M,
    )
    account = AccountFactory(provider=provider(KIND))
    raw, _ = ingest_key_create(account=account, name="tests")
    return account, raw


def ingest(client, raw: str, events: list) -> dict:
    response = client.post(
        "/api/usage/events",
        data=json.dumps(events, default=str),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {raw}",
    )
    assert response.status_code == 200, response.content
    return response.json()


@pytest.mark.django_db
def test_the_ingestion_api_takes_a_native_body_a_final_stream_event_and_bare_usage(
    client, ingest_key
):
    account, raw = ingest_key
    final_event = body("stream_events.json")[-1]

    result = ingest(
        client,
        raw,
        [
            {"request_id": "whole", "usage": body("generate_content.json")},
            {"request_id": "streamed", **final_event},
            {
                "request_id": "bare",
                "model": MODEL,
                "usage": {"promptTokenCount": 1000, "candidatesTokenCount": 100},
            },
            {"request_id": "compat", "usage": body("openai_chat.json")},
        ],
    )

    assert (result["created"], result["rejected"]) == (4, 0), result
    records = {r.request_id: r for r in UsageRecord.objects.filter(account=account)}
    for name in ("whole", "streamed"):
        # as worked above: $0.0000648 + $0.00003072 + $0.000225 = $0.00032052
        assert (records[name].model, records[name].cost) == (MODEL, D("0.00032052")), name
        assert records[name].raw["usage"]["thoughtsTokenCount"] == 87
        assert "candidates" not in records[name].raw["usage"]  # no message text kept
    # 1000 in x $0.30/M = $0.0003; 100 out x $2.50/M = $0.00025; total $0.00055
    assert records["bare"].cost == D("0.00055")
    # 758 x $0.30/M = $0.0002274; 967 x $2.50/M = $0.0024175; total $0.0026449
    assert records["compat"].cost == D("0.0026449")


@pytest.mark.django_db
def test_the_ingestion_api_rejects_a_native_body_with_bad_counts(client, ingest_key):
    _, raw = ingest_key
    bad = {"usageMetadata": {"promptTokenCount": "many"}, "modelVersion": MODEL}

    result = ingest(client, raw, [{"request_id": "bad", "usage": bad}])

    assert result["rejected"] == 1
    assert "usageMetadata.promptTokenCount" in result["results"][0]["reason"]


# --- the long-context tier (2.5 Pro: prompts above 200k tokens) --------------------------------


def pro_body(request_id: str, *, prompt: int, cached: int, candidates: int, thoughts: int) -> dict:
    return {
        "request_id": request_id,
        "usage": {
            "usageMetadata": {
                "promptTokenCount": prompt,
                "cachedContentTokenCount": cached,
                "candidatesTokenCount": candidates,
                "thoughtsTokenCount": thoughts,
            },
            "modelVersion": "gemini-2.5-pro",
        },
    }


@pytest.mark.django_db
def test_a_prompt_above_200k_tokens_prices_the_whole_request_at_the_long_rates(client):
    # The shipped snapshot's gemini/gemini-2.5-pro: $1.25/M in, $0.125/M cached, $10/M out;
    # above 200,000 prompt tokens $2.50/M in, $0.25/M cached, $15/M out.
    call_command("import_prices")
    account = AccountFactory(provider=provider(KIND))
    raw, _ = ingest_key_create(account=account, name="tests")

    result = ingest(
        client,
        raw,
        [
            pro_body("long", prompt=250_000, cached=50_000, candidates=1_000, thoughts=3_000),
            pro_body("at", prompt=200_000, cached=0, candidates=1_000, thoughts=0),
            pro_body("short", prompt=150_000, cached=100_000, candidates=800, thoughts=200),
        ],
    )

    assert result["created"] == 3, result
    cost = {r.request_id: r.cost for r in UsageRecord.objects.filter(account=account)}
    # prompt 250,000 > 200,000: 200,000 uncached x $2.50/M = $0.50; 50,000 cached x $0.25/M =
    # $0.0125; (1,000 + 3,000 thoughts) = 4,000 out x $15/M = $0.06; total $0.5725
    assert cost["long"] == D("0.5725")
    # prompt 200,000 is not above the threshold: 200,000 x $1.25/M = $0.25;
    # 1,000 out x $10/M = $0.01; total $0.26
    assert cost["at"] == D("0.26")
    # prompt 150,000: 50,000 uncached x $1.25/M = $0.0625; 100,000 cached x $0.125/M =
    # $0.0125; (800 + 200) = 1,000 out x $10/M = $0.01; total $0.085
    assert cost["short"] == D("0.085")
