"""A custom OpenAI-compatible endpoint (vLLM, LM Studio, llama.cpp server, Together, Fireworks):
the official `openai` SDK through the proxy, streaming and not, against a vLLM-shaped fake on
loopback that OPENAI_COMPATIBLE_BASE_URL points at; an optional key; no upstream configured;
no way for a request or an account to choose the upstream; pricing from the price book or free;
the ingestion API; the connection test.

Every expected money figure is worked out by hand in the comment beside it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import openai
import pytest
import requests
from django.core.exceptions import ValidationError
from django.core.signals import request_started
from pytest_httpserver import HTTPServer
from werkzeug import Response

from providers.adapters.openai_compatible import OpenAICompatibleAdapter
from providers.connection import account_test_connection
from providers.forms import AccountForm
from providers.http import ErrorClass, ProviderError
from providers.services import account_create, ingest_key_create
from providers.tests.factories import AccountFactory, provider
from providers.tests.test_proxy import (  # noqa: F401 - fixtures are used by name
    MESSAGES,
    _fresh_price_cache,
    _now,
    assert_no_ingest_key_forwarded,
    finished_fixture,
    only_record,
    received,
    records_after,
)
from usage.extraction import extract_usage
from usage.models import Price, RecordStatus, UsageRecord
from usage.pricing import Price as PriceRule
from usage.pricing import cost_for

KIND = "openai_compatible"
FIXTURES = Path(__file__).parent / "fixtures" / KIND
STORED_KEY = "sk-compat-stored-key-0001"  # error_401.json echoes it back
LLAMA = "meta-llama/Llama-3.1-8B-Instruct"
PER_M = Decimal("0.000001")

pytestmark = pytest.mark.django_db
# Calls through the live server: committed for its thread to see; serialized_rollback keeps
# the seeded provider catalogue that the flush after each test would drop.
live = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def body(name: str) -> dict:
    return json.loads(fixture(name), parse_float=Decimal)


@pytest.fixture(name="upstream")
def upstream_fixture(settings, httpserver):
    """The operator's server: the setting is what one gives the OpenAI SDK, /v1 included."""
    settings.OPENAI_COMPATIBLE_BASE_URL = httpserver.url_for("/v1")
    return httpserver


@pytest.fixture
def elsewhere():
    """A second server a client would like the proxy to call instead."""
    server = HTTPServer(host="127.0.0.1")
    server.expect_request("").respond_with_json({"stolen": True})
    server.start()
    yield server
    server.clear()
    if server.is_running():
        server.stop()


@pytest.fixture
def sdk(live_server):
    """The official SDK pointed at the proxy; closed at the end of the test, so no keep-alive
    connection outlives the test's database."""
    clients = []

    def make(raw: str, **kwargs) -> openai.OpenAI:
        options = {"max_retries": 0, **kwargs}
        base_url = f"{live_server.url}/proxy/{KIND}/v1"
        clients.append(openai.OpenAI(base_url=base_url, api_key=raw, **options))
        return clients[-1]

    yield make
    for client in clients:
        client.close()


def connect(*, key: str | None = STORED_KEY, config: dict | None = None):
    account = AccountFactory(
        provider=provider(KIND), keys={"api_key": key} if key else None, config=config or {}
    )
    raw, _ = ingest_key_create(account=account)
    return account, raw


def llama_price() -> Price:
    """What an operator adds in the admin: LiteLLM has no prices for a custom endpoint."""
    return Price.objects.create(
        provider=provider(KIND),
        model=LLAMA,
        valid_from=datetime(2026, 1, 1, tzinfo=UTC),
        input_per_token=Decimal("0.20") * PER_M,
        cache_read_per_token=Decimal("0.10") * PER_M,
        output_per_token=Decimal("0.60") * PER_M,
    )


def sse_handler(raw: bytes):
    events = [chunk + b"\n\n" for chunk in raw.split(b"\n\n") if chunk.strip()]

    def handler(request):
        return Response(iter(events), mimetype="text/event-stream")

    return handler


# --- the proxy, non-streamed ------------------------------------------------------------------


@live
def test_it_proxies_a_chat_with_the_stored_key_and_prices_it_from_the_price_book(sdk, upstream):
    account, raw = connect()
    llama_price()
    upstream.expect_request("/v1/chat/completions", method="POST").respond_with_data(
        fixture("chat.json"), content_type="application/json"
    )
    client = sdk(raw)

    reply = client.chat.completions.create(model=LLAMA, messages=MESSAGES)

    assert reply.choices[0].message.content == "Hello! How can I help?"
    (sent,) = received(upstream, "/v1/chat/completions")
    assert sent.headers["Authorization"] == f"Bearer {STORED_KEY}"
    assert_no_ingest_key_forwarded(sent, raw)
    record = only_record(account)
    assert (record.status, record.model) == (RecordStatus.OK, LLAMA)
    assert (record.input_tokens, record.cache_read_tokens, record.output_tokens) == (200, 1000, 300)
    # 1,200 prompt of which 1,000 cached: 200 × $0.20/M = 0.00004; 1,000 × $0.10/M = 0.0001;
    # 300 out × $0.60/M = 0.00018; sum 0.00032
    assert record.cost == Decimal("0.00032")


@live
def test_it_calls_a_server_without_a_key_when_none_is_stored(sdk, upstream):
    account, raw = connect(key=None)
    upstream.expect_request("/v1/chat/completions").respond_with_data(
        fixture("chat.json"), content_type="application/json"
    )

    sdk(raw).chat.completions.create(model=LLAMA, messages=MESSAGES)

    (sent,) = received(upstream, "/v1/chat/completions")
    assert "Authorization" not in sent.headers  # not even the client's ingest key
    assert_no_ingest_key_forwarded(sent, raw)
    record = only_record(account)
    assert record.input_tokens == 200
    assert record.cost is None  # no price row and not marked free: unpriced, never $0


@live
def test_it_records_a_free_endpoint_at_zero(sdk, upstream):
    account, raw = connect(key=None, config={"free": True})
    llama_price()  # ignored: the account says the hardware is its own
    upstream.expect_request("/v1/chat/completions").respond_with_data(
        fixture("chat.json"), content_type="application/json"
    )

    sdk(raw).chat.completions.create(model=LLAMA, messages=MESSAGES)

    record = only_record(account)
    assert record.cost == Decimal(0)  # a real $0
    assert record.cost is not None


@live
def test_it_proxies_embeddings_and_the_responses_api(sdk, upstream):
    account, raw = connect()
    upstream.expect_request("/v1/embeddings").respond_with_data(
        fixture("embeddings.json"), content_type="application/json"
    )
    upstream.expect_request("/v1/responses").respond_with_data(
        fixture("responses.json"), content_type="application/json"
    )
    Price.objects.create(
        provider=provider(KIND),
        model="openai/gpt-oss-20b",
        valid_from=datetime(2026, 1, 1, tzinfo=UTC),
        input_per_token=Decimal("0.05") * PER_M,
        output_per_token=Decimal("0.20") * PER_M,
    )
    client = sdk(raw)

    client.embeddings.create(model="BAAI/bge-m3", input="hello")
    client.responses.create(model="openai/gpt-oss-20b", input="Say hello")

    embedded, answered = UsageRecord.objects.filter(account=account).order_by("id")
    assert (embedded.model, embedded.input_tokens, embedded.cost) == ("BAAI/bge-m3", 5000, None)
    assert (answered.input_tokens, answered.output_tokens, answered.reasoning_tokens) == (
        800,
        600,
        450,
    )
    # 800 in × $0.05/M = 0.00004; 600 out (450 of them reasoning, priced as output)
    # × $0.20/M = 0.00012; sum 0.00016
    assert answered.cost == Decimal("0.00016")


@live
def test_it_lists_models_without_recording(sdk, upstream):
    account, raw = connect()
    upstream.expect_request("/v1/models", method="GET").respond_with_data(
        fixture("models.json"), content_type="application/json"
    )

    models = sdk(raw).models.list()

    assert [m.id for m in models.data] == [LLAMA, "BAAI/bge-m3"]
    assert not UsageRecord.objects.filter(account=account).exists()


@live
def test_it_never_shows_the_stored_key_a_server_echoes(sdk, upstream):
    account, raw = connect()
    upstream.expect_request("/v1/chat/completions").respond_with_data(
        fixture("error_401.json"), status=401, content_type="application/json"
    )

    with pytest.raises(openai.AuthenticationError) as info:
        sdk(raw).chat.completions.create(model=LLAMA, messages=MESSAGES)

    assert STORED_KEY not in info.value.response.text
    assert (only_record(account).status, only_record(account).cost) == (RecordStatus.FAILED, 0)


# --- the proxy, streamed ----------------------------------------------------------------------


@live
def test_it_streams_a_chat_and_asks_for_the_usage_chunk(sdk, upstream, finished):
    account, raw = connect()
    llama_price()
    upstream.expect_request("/v1/chat/completions").respond_with_handler(
        sse_handler(fixture("chat_stream.txt"))
    )
    client = sdk(raw)

    chunks = list(client.chat.completions.create(model=LLAMA, messages=MESSAGES, stream=True))

    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello!"
    (sent,) = received(upstream, "/v1/chat/completions")
    assert sent.get_json()["stream_options"] == {"include_usage": True}  # added; vLLM honours it
    assert sent.headers["Authorization"] == f"Bearer {STORED_KEY}"
    (record,) = records_after(finished, account)
    assert (record.status, record.request_id) == (RecordStatus.OK, "chatcmpl-5e6f7a8b9c0d")
    assert (record.input_tokens, record.output_tokens) == (2000, 400)
    # 2,000 in × $0.20/M = 0.0004; 400 out × $0.60/M = 0.00024; sum 0.00064
    assert record.cost == Decimal("0.00064")


@live
def test_it_streams_without_a_key_and_records_a_free_endpoint_at_zero(sdk, upstream, finished):
    account, raw = connect(key=None, config={"free": True})
    upstream.expect_request("/v1/chat/completions").respond_with_handler(
        sse_handler(fixture("chat_stream.txt"))
    )

    list(sdk(raw).chat.completions.create(model=LLAMA, messages=MESSAGES, stream=True))

    (sent,) = received(upstream, "/v1/chat/completions")
    assert "Authorization" not in sent.headers
    (record,) = records_after(finished, account)
    assert (record.input_tokens, record.output_tokens, record.cost) == (2000, 400, Decimal(0))


@live
def test_it_leaves_an_unpriced_stream_unpriced(sdk, upstream, finished):
    account, raw = connect()
    upstream.expect_request("/v1/chat/completions").respond_with_handler(
        sse_handler(fixture("chat_stream.txt"))
    )

    list(sdk(raw).chat.completions.create(model=LLAMA, messages=MESSAGES, stream=True))

    (record,) = records_after(finished, account)
    assert (record.status, record.output_tokens, record.cost) == (RecordStatus.OK, 400, None)


# --- the upstream is the operator's alone -----------------------------------------------------


@live
def test_without_a_base_url_it_answers_a_clear_error_and_sends_nothing(sdk, settings, httpserver):
    settings.OPENAI_COMPATIBLE_BASE_URL = ""
    account, raw = connect()
    client = sdk(raw, max_retries=2)  # the SDK's default, which a bare 503 would trigger
    asked = []

    def count(sender, **kwargs):
        asked.append(sender)

    request_started.connect(count, weak=False)

    try:
        with pytest.raises(openai.InternalServerError) as info:
            client.chat.completions.create(model=LLAMA, messages=MESSAGES)
    finally:
        request_started.disconnect(count)

    assert info.value.status_code == 503
    assert info.value.message == (
        "Error code: 503 - No upstream is configured for OpenAI-compatible endpoint (custom): "
        "the server's operator sets OPENAI_COMPATIBLE_BASE_URL."
    )
    assert info.value.response.headers["x-should-retry"] == "false"
    assert len(asked) == 1  # not retried
    assert httpserver.log == []
    assert not UsageRecord.objects.filter(account=account).exists()


@live
def test_no_header_or_path_of_the_request_changes_where_it_goes(
    live_server, upstream, elsewhere, settings
):
    # Even with a permissive front (any Host accepted, X-Forwarded-Host trusted).
    settings.ALLOWED_HOSTS = ["*"]
    settings.USE_X_FORWARDED_HOST = True
    _, raw = connect()
    upstream.expect_request("/v1/chat/completions").respond_with_data(
        fixture("chat.json"), content_type="application/json"
    )
    other = elsewhere.url_for("/").rstrip("/")
    other_host = other.split("//")[1]
    auth = {"Authorization": f"Bearer {raw}"}
    proxy = f"{live_server.url}/proxy/{KIND}"

    answered = requests.post(
        f"{proxy}/v1/chat/completions?base_url={other}/v1",
        headers={
            **auth,
            "Host": other_host,
            "X-Forwarded-Host": other_host,
            "Forwarded": f"host={other_host}",
            "X-Base-Url": other,
        },
        json={"model": LLAMA, "messages": MESSAGES, "base_url": other, "api_base": other},
        timeout=10,
    )
    refused = [
        requests.post(f"{proxy}/{path}", headers=auth, json={}, timeout=10).status_code
        for path in (
            f"{other}/v1/chat/completions",
            f"//{other_host}/v1/chat/completions",
            "v1/../../admin/",
            "chat/completions",
        )
    ]

    assert answered.status_code == 200
    (sent,) = received(upstream, "/v1/chat/completions")
    assert sent.host == upstream.url_for("/").split("//")[1].rstrip("/")
    assert "X-Forwarded-Host" not in sent.headers and "X-Base-Url" not in sent.headers
    assert refused == [404, 404, 404, 404]
    assert elsewhere.log == []


def test_an_account_cannot_carry_a_base_url():
    owner = AccountFactory().workspace.personal_for

    with pytest.raises(ValidationError) as info:
        account_create(
            workspace=owner.personal_workspace,
            provider=provider(KIND),
            name="mine",
            config={"base_url": "http://169.254.169.254/latest"},
        )

    assert info.value.message_dict == {
        "config": ["base_url: Unknown setting for OpenAI-compatible (custom) (known: free)."]
    }


# --- accounts ---------------------------------------------------------------------------------


def test_an_account_without_a_key_is_created_through_the_form():
    owner = AccountFactory().workspace.personal_for
    data = {
        "provider": provider(KIND).pk,
        "name": "gpu box",
        "is_active": "on",
        f"{KIND}_free": "on",
    }
    form = AccountForm(data=data, workspace=owner.personal_workspace)
    assert form.is_valid(), form.errors

    account = account_create(workspace=owner.personal_workspace, **form.service_kwargs())

    assert (account.has_api_key, account.config) == (False, {"free": True})
    assert "optional for OpenAI-compatible (custom)" in form.fields["api_key"].help_text


def test_the_connection_test_lists_models_with_and_without_a_key(upstream):
    upstream.expect_request("/v1/models").respond_with_data(
        fixture("models.json"), content_type="application/json"
    )
    keyed, _ = connect()
    keyless, _ = connect(key=None)
    host = upstream.url_for("/").split("//")[1].rstrip("/")

    results = [account_test_connection(account=a) for a in (keyed, keyless)]

    assert [(r.ok, r.message) for r in results] == [
        (True, f"Connected to {host} (2 models available)")
    ] * 2
    with_key, without_key = received(upstream, "/v1/models")
    assert with_key.headers["Authorization"] == f"Bearer {STORED_KEY}"
    assert "Authorization" not in without_key.headers


def test_the_connection_test_reports_a_rejected_key_without_showing_it(upstream):
    upstream.expect_request("/v1/models").respond_with_data(
        fixture("error_401.json"), status=401, content_type="application/json"
    )
    account, _ = connect()

    result = account_test_connection(account=account)

    assert (result.ok, result.message, result.error_class) == (
        False,
        "key rejected (401)",
        ErrorClass.AUTH,
    )
    assert STORED_KEY not in result.full_text


def test_the_connection_test_names_the_setting_when_no_base_url_is_set(settings, httpserver):
    settings.OPENAI_COMPATIBLE_BASE_URL = ""
    account, _ = connect()

    result = account_test_connection(account=account)

    assert (result.ok, result.error_class) == (False, ErrorClass.CONFIG)
    assert "OPENAI_COMPATIBLE_BASE_URL" in result.message
    assert httpserver.log == []


def test_the_connection_test_accepts_a_model_list_sent_as_a_bare_array(httpserver):
    # Together's GET /v1/models answers a JSON array, not OpenAI's {"data": [...]}.
    httpserver.expect_request("/v1/models").respond_with_json(
        [{"id": "meta-llama/Llama-3.3-70B-Instruct-Turbo", "object": "model", "type": "chat"}]
    )
    base = httpserver.url_for("/v1")
    adapter = OpenAICompatibleAdapter(base_url=base, secret="tgp_v1_test", config={})

    message = adapter.test_connection()

    assert message == f"Connected to {base.split('//')[1][:-3]} (its model list is a plain array)"
    assert httpserver.log[0][0].headers["Authorization"] == "Bearer tgp_v1_test"


def test_the_connection_test_does_not_take_an_html_page_for_a_server(httpserver):
    httpserver.expect_request("/v1/models").respond_with_data(
        "<!doctype html><title>Web UI</title>", content_type="text/html"
    )
    adapter = OpenAICompatibleAdapter(base_url=httpserver.url_for("/v1"), secret="", config={})

    with pytest.raises(ProviderError) as info:
        adapter.test_connection()

    assert info.value.error_class == ErrorClass.MALFORMED


def test_the_connection_message_never_shows_credentials_in_the_base_url(httpserver):
    httpserver.expect_request("/v1/models").respond_with_data(
        fixture("models.json"), content_type="application/json"
    )
    host = httpserver.url_for("/").split("//")[1].rstrip("/")
    base = f"http://operator:s3cret-pass@{host}/v1"

    message = OpenAICompatibleAdapter(base_url=base, secret="", config={}).test_connection()

    assert message == f"Connected to {host} (2 models available)"


def test_the_connection_test_hints_at_a_missing_v1(httpserver):
    httpserver.expect_request("/models").respond_with_data("404 page not found", status=404)
    adapter = OpenAICompatibleAdapter(base_url=httpserver.url_for("/"), secret="", config={})

    with pytest.raises(ProviderError) as info:
        adapter.test_connection()

    assert info.value.permanent is True
    assert info.value.message.endswith("OPENAI_COMPATIBLE_BASE_URL usually ends in /v1")


# --- the ingestion API ------------------------------------------------------------------------


def test_the_ingestion_api_takes_whole_bodies_and_streamed_final_chunks(client):
    account, raw = connect()
    llama_price()
    final_chunk = json.loads(fixture("chat_stream.txt").split(b"\n\n")[3].removeprefix(b"data: "))
    events = [
        {"request_id": "whole", **body("chat.json")},
        {"request_id": "streamed", **final_chunk},
    ]

    reply = client.post(
        "/api/usage/events",
        data=json.dumps(events, default=str),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {raw}",
    )

    assert reply.status_code == 200, reply.content
    assert reply.json()["created"] == 2
    whole = UsageRecord.objects.get(account=account, request_id="whole")
    streamed = UsageRecord.objects.get(account=account, request_id="streamed")
    assert (whole.input_tokens, whole.cache_read_tokens, whole.output_tokens) == (200, 1000, 300)
    assert whole.cost == Decimal("0.00032")  # 200 × 0.20/M + 1,000 × 0.10/M + 300 × 0.60/M
    assert (streamed.input_tokens, streamed.output_tokens) == (2000, 400)
    assert streamed.cost == Decimal("0.00064")  # 2,000 × $0.20/M + 400 × $0.60/M


def test_the_ingestion_api_records_a_free_endpoint_at_zero_and_an_unpriced_one_as_none(client):
    free, free_raw = connect(key=None, config={"free": True})
    paid, paid_raw = connect(key=None)
    for raw in (free_raw, paid_raw):
        reply = client.post(
            "/api/usage/events",
            data=json.dumps([{"request_id": "r1", **body("embeddings.json")}], default=str),
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {raw}",
        )
        assert reply.json()["created"] == 1

    assert UsageRecord.objects.get(account=free).cost == Decimal(0)
    assert UsageRecord.objects.get(account=paid).cost is None  # no price row for bge-m3


# --- pricing rules (no database) --------------------------------------------------------------


def test_its_pricing_rules():
    usage = extract_usage(KIND, body("chat.json"))
    price = PriceRule(
        input_per_token=Decimal("0.20") * PER_M,
        cache_read_per_token=Decimal("0.10") * PER_M,
        output_per_token=Decimal("0.60") * PER_M,
    )

    # 200 × $0.20/M + 1,000 × $0.10/M + 300 × $0.60/M = 0.00004 + 0.0001 + 0.00018 = 0.00032
    assert cost_for(KIND, usage, price) == Decimal("0.00032")
    assert cost_for(KIND, usage, None) is None  # unpriced, never $0
    assert cost_for(KIND, usage, None, account_config={"free": False}) is None
    assert cost_for(KIND, usage, None, account_config={"free": True}) == Decimal(0)
    assert cost_for(KIND, usage, price, account_config={"free": True}) == Decimal(0)
