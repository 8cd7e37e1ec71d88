"""The proxy, non-streamed calls: official SDKs as clients, a fake provider on loopback.

Shared helpers for test_proxy_streaming.py live here too.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from decimal import Decimal

import anthropic
import openai
import pytest
import requests
import time_machine
from django.core.signals import request_finished
from werkzeug import Request, Response

from providers.models import ProviderAccount
from providers.selectors import ingest_key_lookup
from providers.services import ingest_key_create, ingest_key_revoke
from providers.tests.factories import AccountFactory, provider
from usage.models import DailyUsage, Price, RecordStatus, UsageRecord
from usage.services.prices import price_cache_clear
from usage.tests.rollup_check import assert_rollups_match_records

NOW = datetime(2026, 8, 21, 12, 0, tzinfo=UTC)
PROVIDER_KEY = "sk-provider-secret-key-0001"
BASE_URL_SETTINGS = (
    "OPENAI_BASE_URL",
    "ANTHROPIC_BASE_URL",
    "GROQ_BASE_URL",
    "PERPLEXITY_BASE_URL",
    "OLLAMA_BASE_URL",
)
# serialized_rollback: the flush after each test would drop the seeded provider catalogue.
pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


# --- helpers shared with test_proxy_streaming.py --------------------------------------------


@pytest.fixture(autouse=True)
def _fresh_price_cache():
    price_cache_clear()
    yield
    price_cache_clear()


@pytest.fixture(autouse=True)
def _now():
    # tick=True: the live server's sockets and timeouts need a clock that moves.
    with time_machine.travel(NOW, tick=True):
        yield


@pytest.fixture(name="upstream")
def upstream_fixture(settings, httpserver):
    """Every provider's base URL points at the fake provider on loopback."""
    base = httpserver.url_for("/").rstrip("/")
    for name in BASE_URL_SETTINGS:
        setattr(settings, name, base)
    return httpserver


def connect(slug: str, *, api_key: str | None = PROVIDER_KEY) -> tuple[ProviderAccount, str]:
    """An account of that provider with a stored key, and a fresh ingest key for it."""
    account = AccountFactory(
        provider=provider(slug), keys={"api_key": api_key} if api_key else None
    )
    raw, _ = ingest_key_create(account=account)
    return account, raw


def add_price(slug: str, model: str, **rates: Decimal) -> Price:
    return Price.objects.create(
        provider=provider(slug), model=model, valid_from=datetime(2026, 1, 1, tzinfo=UTC), **rates
    )


def gpt_4o_mini_price() -> Price:
    return add_price(
        "openai",
        "gpt-4o-mini",
        input_per_token=Decimal("0.00000015"),
        cache_read_per_token=Decimal("0.000000075"),
        output_per_token=Decimal("0.0000006"),
    )


def sonnet_price() -> Price:
    return add_price(
        "anthropic",
        "claude-sonnet-4-6",
        input_per_token=Decimal("0.000003"),
        cache_read_per_token=Decimal("0.0000003"),
        cache_write_per_token=Decimal("0.00000375"),
        output_per_token=Decimal("0.000015"),
    )


def received(httpserver, path: str) -> list[Request]:
    return [request for request, _ in httpserver.log if request.path == path]


def assert_no_ingest_key_forwarded(request: Request, raw: str) -> None:
    for name, value in request.headers.items():
        assert raw not in value, f"ingest key leaked upstream in {name}"
    assert "Cookie" not in request.headers


@pytest.fixture(name="finished")
def finished_fixture():
    """Set when the live server has finished a request (after the proxy wrote its record).

    Waiting on it, rather than polling the database, keeps the test's reads from colliding
    with the server thread's write on the shared in-memory SQLite test database.
    """
    done = threading.Event()

    def receiver(**kwargs):
        done.set()

    request_finished.connect(receiver, weak=False)
    yield done
    request_finished.disconnect(receiver)


def records_after(finished: threading.Event, account: ProviderAccount) -> list[UsageRecord]:
    """The account's records once the request is over: the client (e.g. an SDK after [DONE])
    may hang up before the proxy has finished."""
    assert finished.wait(10), "the proxied request never finished"
    return list(UsageRecord.objects.filter(account=account).order_by("id"))


def only_record(account: ProviderAccount) -> UsageRecord:
    records = list(UsageRecord.objects.filter(account=account))
    assert len(records) == 1, records
    return records[0]


def openai_client(live_server, slug: str, raw: str, suffix: str = "v1", **kwargs) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{live_server.url}/proxy/{slug}/{suffix}", api_key=raw, max_retries=0, **kwargs
    )


# --- provider-shaped bodies -------------------------------------------------------------------

OPENAI_CHAT = {
    "id": "chatcmpl-proxy-0001",
    "object": "chat.completion",
    "created": 1785600000,
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello!"},
            "finish_reason": "stop",
        }
    ],
    "usage": {
        "prompt_tokens": 1200,
        "completion_tokens": 300,
        "total_tokens": 1500,
        "prompt_tokens_details": {"cached_tokens": 1000},
        "completion_tokens_details": {"reasoning_tokens": 0},
    },
}
# Indented on purpose: the client must get these exact bytes, not a re-serialisation.
OPENAI_CHAT_BYTES = json.dumps(OPENAI_CHAT, indent=3).encode()

ANTHROPIC_MESSAGE = {
    "id": "msg_01ProxyTest",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-6",
    "content": [{"type": "text", "text": "Hi!"}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 412,
        "cache_creation_input_tokens": 2048,
        "cache_read_input_tokens": 8192,
        "output_tokens": 230,
    },
}

PERPLEXITY_CHAT = {
    "id": "3c1e8b0a-6f6d-4d4e-9a55-1f0c2b7d9e11",
    "model": "sonar",
    "created": 1785600000,
    "object": "chat.completion",
    "choices": [
        {
            "index": 0,
            "finish_reason": "stop",
            "message": {"role": "assistant", "content": "Paris [1]."},
        }
    ],
    "citations": ["https://en.wikipedia.org/wiki/Paris"],
    "usage": {
        "prompt_tokens": 9,
        "completion_tokens": 11,
        "total_tokens": 20,
        "search_context_size": "low",
        "cost": {
            "input_tokens_cost": 0.000009,
            "output_tokens_cost": 0.000011,
            "request_cost": 0.005,
            "total_cost": 0.00502,
        },
    },
}

MESSAGES = [{"role": "user", "content": "Say hello"}]


# --- non-streamed calls -----------------------------------------------------------------------


def test_it_forwards_an_openai_chat_call_and_records_its_cost(live_server, upstream):
    account, raw = connect("openai")
    gpt_4o_mini_price()
    upstream.expect_request("/v1/chat/completions", method="POST").respond_with_data(
        OPENAI_CHAT_BYTES,
        content_type="application/json",
        headers={
            "x-request-id": "req_upstream_1",
            "x-ratelimit-remaining-tokens": "149000",
            "set-cookie": "upstream=1",
        },
    )
    client = openai_client(live_server, "openai", raw, default_headers={"Cookie": "sessionid=x"})

    reply = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)

    assert reply.http_response.status_code == 200
    assert reply.http_response.content == OPENAI_CHAT_BYTES  # byte for byte
    assert reply.headers["content-length"] == str(len(OPENAI_CHAT_BYTES))
    assert reply.headers["x-request-id"] == "req_upstream_1"
    assert reply.headers["x-ratelimit-remaining-tokens"] == "149000"
    assert "upstream=1" not in reply.headers.get("set-cookie", "")  # provider cookies stay
    assert reply.parse().usage.prompt_tokens == 1200
    (sent,) = received(upstream, "/v1/chat/completions")
    assert sent.headers["Authorization"] == f"Bearer {PROVIDER_KEY}"
    assert_no_ingest_key_forwarded(sent, raw)
    assert sent.get_json() == {"model": "gpt-4o-mini", "messages": MESSAGES}  # untouched

    record = only_record(account)
    assert record.request_id == "chatcmpl-proxy-0001"
    assert record.status == RecordStatus.OK
    assert record.model == "gpt-4o-mini-2024-07-18"
    assert (record.input_tokens, record.cache_read_tokens, record.output_tokens) == (200, 1000, 300)
    # 200 × 0.00000015 = 0.00003; 1000 × 0.000000075 = 0.000075; 300 × 0.0000006 = 0.00018
    # 0.00003 + 0.000075 + 0.00018 = 0.000285
    assert record.cost == Decimal("0.000285")
    assert record.bucket_start.date() == NOW.date()
    day = DailyUsage.objects.get(account=account)
    assert (day.record_count, day.cost) == (1, Decimal("0.000285"))  # roll-up kept current


def test_it_records_a_call_whose_client_hangs_up_before_the_body_ends(
    live_server, upstream, finished
):
    # The last byte of a non-streamed answer is sent after the record is written; a client
    # that leaves without reading the body must not cost the record. (A client gone before
    # the server could write: providers/tests/test_proxy_body.py.)
    account, raw = connect("openai")
    gpt_4o_mini_price()
    upstream.expect_request("/v1/chat/completions").respond_with_data(
        OPENAI_CHAT_BYTES, content_type="application/json"
    )
    response = requests.post(
        f"{live_server.url}/proxy/openai/v1/chat/completions",
        headers={"Authorization": f"Bearer {raw}"},
        json={"model": "gpt-4o-mini", "messages": MESSAGES},
        stream=True,
        timeout=10,
    )
    assert response.status_code == 200
    response.raw.read(10)
    response.close()  # the client goes away with most of the body unread

    (record,) = records_after(finished, account)
    assert (record.status, record.cost) == (RecordStatus.OK, Decimal("0.000285"))  # as above


def test_it_records_a_repeated_response_id_once(live_server, upstream):
    account, raw = connect("openai")
    gpt_4o_mini_price()
    upstream.expect_request("/v1/chat/completions").respond_with_data(
        OPENAI_CHAT_BYTES, content_type="application/json"
    )
    client = openai_client(live_server, "openai", raw)

    for _ in range(2):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    assert len(received(upstream, "/v1/chat/completions")) == 2
    record = only_record(account)
    # Counted once: 0.000285 as above, not 0.00057.
    assert DailyUsage.objects.get(account=account).cost == record.cost == Decimal("0.000285")


def test_it_takes_tags_from_tracker_headers(live_server, upstream):
    account, raw = connect("openai")
    upstream.expect_request("/v1/embeddings").respond_with_json(
        {
            "object": "list",
            "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}],
            "model": "text-embedding-3-small",
            "usage": {"prompt_tokens": 8, "total_tokens": 8},
        }
    )
    client = openai_client(
        live_server,
        "openai",
        raw,
        default_headers={
            "X-Tracker-Project": "apollo",
            "X-Tracker-User": "ada",
            "X-Tracker-Feature": "search",
        },
    )

    client.embeddings.create(model="text-embedding-3-small", input="hello")

    record = only_record(account)
    assert record.tags == {"project": "apollo", "user": "ada", "feature": "search"}
    assert record.ingest_key_id == ingest_key_lookup(raw=raw).pk  # the key the call came with
    rows = assert_rollups_match_records([account.pk])
    day = record.bucket_start.astimezone(UTC).date()
    assert set(rows) == {
        (account.pk, day, "estimated", dimension, value)
        for dimension, value in (
            ("project", "apollo"),
            ("user", "ada"),
            ("feature", "search"),
            ("ingest_key", str(record.ingest_key_id)),
        )
    }
    assert record.input_tokens == 8
    assert record.cost is None  # no price row for this model: unpriced, never $0
    assert record.request_id.startswith("proxy-")  # embeddings carry no id: a generated one
    (sent,) = received(upstream, "/v1/embeddings")
    assert not any(name.lower().startswith("x-tracker") for name in sent.headers.keys())


@pytest.mark.parametrize(
    ("header", "value", "message"),
    [
        ("X-Tracker-Project", "p" * 201, "X-Tracker-Project: at most 200 characters"),
        ("X-Tracker-User", "ada\x01", "X-Tracker-User: control characters are not allowed"),
    ],
)
def test_it_refuses_a_tag_it_would_have_to_cut_or_garble(
    live_server, upstream, header, value, message
):
    # A tag past the bound used to be cut to 200 characters without a word; now the call is
    # refused before anything is sent, naming the header, as ingestion names its field.
    account, raw = connect("openai")

    reply = requests.post(
        f"{live_server.url}/proxy/openai/v1/chat/completions",
        json={"model": "gpt-4o-mini", "messages": MESSAGES},
        headers={"Authorization": f"Bearer {raw}", header: value},
        timeout=30,
    )

    assert reply.status_code == 400
    assert reply.json()["error"]["message"] == message
    assert received(upstream, "/v1/chat/completions") == []
    assert not UsageRecord.objects.filter(account=account).exists()


def test_it_refuses_a_new_tag_value_past_the_days_bound_before_calling(
    live_server, upstream, monkeypatch
):
    from usage.services import tag_values

    monkeypatch.setattr(tag_values, "TAG_MAX_VALUES", 2)  # 1,000 in production
    account, raw = connect("openai")
    path = "/v1/chat/completions"
    upstream.expect_request(path).respond_with_json(
        {"model": "gpt-4o-mini", "usage": {"prompt_tokens": 1, "completion_tokens": 1}}
    )

    def call(project: str) -> requests.Response:
        return requests.post(
            f"{live_server.url}/proxy/openai{path}",
            json={"model": "gpt-4o-mini", "messages": MESSAGES},
            headers={"Authorization": f"Bearer {raw}", "X-Tracker-Project": project},
            timeout=30,
        )

    assert [call(p).status_code for p in ("a", "b")] == [200, 200]
    refused = call("c")
    assert refused.status_code == 400
    assert refused.json()["error"]["message"] == (
        "X-Tracker-Project: this account already has 2 distinct project values this UTC day; "
        "reuse one of them or tag with fewer distinct values"
    )
    assert call("a").status_code == 200  # a value the day already has is always welcome
    assert len(received(upstream, path)) == 3  # the refused call was never made
    projects = UsageRecord.objects.filter(account=account).values_list("tags__project", flat=True)
    assert sorted(projects) == ["a", "a", "b"]


def test_a_tag_of_exactly_200_characters_is_kept_whole(live_server, upstream):
    account, raw = connect("openai")
    upstream.expect_request("/v1/chat/completions").respond_with_json(
        {"id": "c1", "model": "gpt-4o-mini", "usage": {"prompt_tokens": 1, "completion_tokens": 1}}
    )

    requests.post(
        f"{live_server.url}/proxy/openai/v1/chat/completions",
        json={"model": "gpt-4o-mini", "messages": MESSAGES},
        headers={"Authorization": f"Bearer {raw}", "X-Tracker-Feature": "f" * 200},
        timeout=30,
    )

    assert only_record(account).tags == {"feature": "f" * 200}


def test_it_forwards_an_anthropic_message_with_the_stored_key(live_server, upstream):
    account, raw = connect("anthropic")
    sonnet_price()
    body = json.dumps(ANTHROPIC_MESSAGE).encode()
    upstream.expect_request("/v1/messages", method="POST").respond_with_data(
        body,
        content_type="application/json",
        headers={"request-id": "req_ant_1", "anthropic-ratelimit-tokens-remaining": "9000"},
    )
    client = anthropic.Anthropic(
        base_url=f"{live_server.url}/proxy/anthropic",
        api_key=raw,
        max_retries=0,
        default_headers={"anthropic-beta": "prompt-caching-2024-07-31"},
    )

    reply = client.messages.with_raw_response.create(
        model="claude-sonnet-4-6", max_tokens=100, messages=MESSAGES
    )

    assert reply.http_response.content == body
    assert reply.headers["request-id"] == "req_ant_1"
    assert reply.headers["anthropic-ratelimit-tokens-remaining"] == "9000"
    (sent,) = received(upstream, "/v1/messages")
    assert sent.headers["x-api-key"] == PROVIDER_KEY
    assert sent.headers["anthropic-version"]  # the SDK's, passed on
    assert sent.headers["anthropic-beta"] == "prompt-caching-2024-07-31"
    assert "Authorization" not in sent.headers
    assert_no_ingest_key_forwarded(sent, raw)

    record = only_record(account)
    assert record.request_id == "msg_01ProxyTest"
    assert (
        record.input_tokens,
        record.cache_write_tokens,
        record.cache_read_tokens,
        record.output_tokens,
    ) == (412, 2048, 8192, 230)
    # 412 × 0.000003 = 0.001236; 2048 × 0.00000375 = 0.00768; 8192 × 0.0000003 = 0.0024576;
    # 230 × 0.000015 = 0.00345; sum = 0.0148236
    assert record.cost == Decimal("0.0148236")


def test_it_records_perplexitys_own_cost(live_server, upstream):
    account, raw = connect("perplexity")
    # A book price that would give another figure: Perplexity's own total must win.
    add_price(
        "perplexity",
        "sonar",
        input_per_token=Decimal("0.000001"),
        output_per_token=Decimal("0.000001"),
    )
    upstream.expect_request("/chat/completions", method="POST").respond_with_json(PERPLEXITY_CHAT)

    client = openai_client(live_server, "perplexity", raw)
    client.chat.completions.create(model="sonar", messages=MESSAGES)

    assert len(received(upstream, "/chat/completions")) == 1  # no /v1 upstream
    record = only_record(account)
    assert (record.input_tokens, record.output_tokens) == (9, 11)
    assert record.cost == Decimal("0.00502")  # usage.cost.total_cost, exactly
    assert record.raw["usage"]["cost"]["total_cost"] == "0.00502"  # kept for audit, exactly


def test_it_forwards_ollama_openai_calls_without_a_key(live_server, upstream):
    account, raw = connect("ollama", api_key=None)
    upstream.expect_request("/v1/chat/completions").respond_with_json(
        {
            "id": "chatcmpl-123",
            "object": "chat.completion",
            "created": 1785600000,
            "model": "llama3.2",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Hi"},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 26, "completion_tokens": 18, "total_tokens": 44},
        }
    )

    openai_client(live_server, "ollama", raw).chat.completions.create(
        model="llama3.2", messages=MESSAGES
    )

    (sent,) = received(upstream, "/v1/chat/completions")
    assert "Authorization" not in sent.headers
    record = only_record(account)
    assert (record.input_tokens, record.output_tokens) == (26, 18)
    assert record.cost == Decimal(0)  # local models are free


def test_it_lists_models_without_recording(live_server, upstream):
    account, raw = connect("openai")
    upstream.expect_request("/v1/models", method="GET").respond_with_json(
        {"object": "list", "data": [{"id": "gpt-4o-mini", "object": "model", "created": 1}]}
    )

    models = openai_client(live_server, "openai", raw).models.list()

    assert [m.id for m in models] == ["gpt-4o-mini"]
    assert not UsageRecord.objects.filter(account=account).exists()


# --- failures ---------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 500])
def test_it_passes_provider_errors_through_and_records_a_failure(live_server, upstream, status):
    account, raw = connect("openai")
    gpt_4o_mini_price()
    error = b'{"error": {"message": "Rate limit reached", "type": "requests"}}'
    upstream.expect_request("/v1/chat/completions").respond_with_data(
        error, status=status, content_type="application/json", headers={"retry-after": "7"}
    )

    response = requests.post(
        f"{live_server.url}/proxy/openai/v1/chat/completions",
        headers={"Authorization": f"Bearer {raw}"},
        json={"model": "gpt-4o-mini", "messages": MESSAGES},
        timeout=10,
    )

    assert response.status_code == status
    assert response.content == error
    assert response.headers["retry-after"] == "7"
    record = only_record(account)
    assert record.status == RecordStatus.FAILED
    assert record.model == "gpt-4o-mini"  # from the request, as the error names none
    assert record.cost == Decimal(0)  # refused calls are not billed
    assert DailyUsage.objects.get(account=account).failed_count == 1


def test_it_answers_502_when_the_provider_is_unreachable(live_server, settings):
    account, raw = connect("openai")
    settings.OPENAI_BASE_URL = "http://127.0.0.1:9"  # discard port: nothing listens
    client = openai_client(live_server, "openai", raw)

    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    assert caught.value.status_code == 502
    assert caught.value.body["type"] == "upstream_unreachable"
    assert "could not be reached" in caught.value.message
    record = only_record(account)
    assert (record.status, record.cost, record.model) == (
        RecordStatus.FAILED,
        Decimal(0),
        "gpt-4o-mini",
    )


def test_it_times_out_a_silent_provider_with_a_502(live_server, upstream, settings):
    account, raw = connect("openai")
    settings.PROXY_READ_TIMEOUT = 0.3
    done = threading.Event()

    def slow(request):
        time.sleep(1.0)
        done.set()
        return Response(OPENAI_CHAT_BYTES, content_type="application/json")

    upstream.expect_request("/v1/chat/completions").respond_with_handler(slow)

    response = requests.post(
        f"{live_server.url}/proxy/openai/v1/chat/completions",
        headers={"Authorization": f"Bearer {raw}"},
        json={"model": "gpt-4o-mini", "messages": MESSAGES},
        timeout=10,
    )

    assert response.status_code == 502
    assert response.json()["error"]["message"] == "The provider timed out."
    assert only_record(account).status == RecordStatus.FAILED
    assert done.wait(5)  # let the fake provider finish before the next test uses it


def _post(live_server, path: str, **headers: str) -> requests.Response:
    return requests.post(
        f"{live_server.url}/proxy/{path}",
        headers=headers,
        json={"model": "gpt-4o-mini", "messages": MESSAGES},
        timeout=10,
    )


def test_it_refuses_missing_wrong_and_revoked_ingest_keys(live_server, upstream):
    _, revoked_raw = connect("openai")
    ingest_key_revoke(key=ingest_key_lookup(raw=revoked_raw))

    for headers in (
        {},
        {"Authorization": "Bearer cti_not-a-real-key"},
        {"Authorization": f"Bearer {revoked_raw}"},
        {"Authorization": f"Bearer {PROVIDER_KEY}"},  # a provider key is not an ingest key
    ):
        response = _post(live_server, "openai/v1/chat/completions", **headers)
        assert response.status_code == 401, headers
        assert response.json()["error"]["type"] == "authentication_error"
    assert upstream.log == []  # nothing was forwarded
    assert not UsageRecord.objects.exists()


def test_it_refuses_a_key_of_another_providers_account(live_server, upstream):
    _, anthropic_raw = connect("anthropic")

    response = _post(
        live_server, "openai/v1/chat/completions", Authorization=f"Bearer {anthropic_raw}"
    )

    assert response.status_code == 403
    assert response.json()["error"]["type"] == "permission_error"
    assert upstream.log == []


def test_it_asks_for_a_stored_provider_key(live_server, upstream):
    account, raw = connect("groq", api_key=None)

    response = _post(live_server, "groq/v1/chat/completions", Authorization=f"Bearer {raw}")

    assert response.status_code == 400
    assert response.json()["error"]["message"] == "No API key stored for this account."
    assert upstream.log == []
    assert not UsageRecord.objects.filter(account=account).exists()


def test_it_forwards_only_allow_listed_paths_and_methods(live_server, upstream):
    _, raw = connect("openai")
    auth = {"Authorization": f"Bearer {raw}"}

    for path in ("openai/v1/files", "openai/v1/../admin/", "openai/dashboard/billing/usage"):
        assert _post(live_server, path, **auth).status_code == 404, path
    assert _post(live_server, "copilot/v1/chat/completions", **auth).status_code == 404
    response = requests.get(
        f"{live_server.url}/proxy/openai/v1/chat/completions", headers=auth, timeout=10
    )
    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"
    assert upstream.log == []


def test_it_never_takes_the_upstream_host_from_the_request(live_server, upstream):
    _, raw = connect("openai")
    upstream.expect_request("/v1/chat/completions").respond_with_data(
        OPENAI_CHAT_BYTES, content_type="application/json"
    )

    response = requests.post(
        f"{live_server.url}/proxy/openai/v1/chat/completions",
        headers={
            "Authorization": f"Bearer {raw}",
            "X-Forwarded-Host": "evil.example",
            "Forwarded": "host=evil.example",
        },
        json={"model": "gpt-4o-mini", "messages": MESSAGES},
        timeout=10,
    )

    assert response.status_code == 200
    (sent,) = received(upstream, "/v1/chat/completions")
    assert sent.host == upstream.url_for("/").split("//")[1].rstrip("/")
    assert "X-Forwarded-Host" not in sent.headers


def test_it_keeps_no_provider_cookies_between_calls(live_server, upstream):
    _, raw = connect("openai")
    _, other_raw = connect("openai")
    upstream.expect_request("/v1/chat/completions").respond_with_data(
        OPENAI_CHAT_BYTES, content_type="application/json", headers={"set-cookie": "lb=node-7"}
    )

    for key in (raw, other_raw):
        openai_client(live_server, "openai", key).chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES
        )

    first, second = received(upstream, "/v1/chat/completions")
    assert "Cookie" not in second.headers  # the pooled session's jar accepts nothing
