"""POST /api/usage/events with an ingest key: per-item results, idempotency, no 500s.

Every expected figure is worked out by hand in the comment beside it.
"""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
import time_machine

from accounts.services import api_token_create
from providers.services import ingest_key_create, ingest_key_revoke
from providers.tests.factories import AccountFactory, provider
from usage.models import DailyUsage, Price, UsageRecord
from usage.services.prices import EPOCH

pytestmark = pytest.mark.django_db

D = Decimal
PER_M = D("0.000001")
URL = "/api/usage/events"
NOW = "2026-11-15 12:00:00Z"


@pytest.fixture(autouse=True)
def _frozen():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def account():
    Price.objects.create(
        provider=provider("openai"),
        model="gpt-4o",
        valid_from=EPOCH,
        input_per_token=D("2.50") * PER_M,
        cache_read_per_token=D("1.25") * PER_M,
        output_per_token=D("10") * PER_M,
    )
    return AccountFactory(provider=provider("openai"))


@pytest.fixture
def key(account) -> str:
    raw, _ = ingest_key_create(account=account, name="tests")
    return raw


def post(client, key: str | None, body, *, raw: bytes | str | None = None):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {key}"} if key else {}
    data = raw if raw is not None else json.dumps(body)
    return client.post(URL, data=data, content_type="application/json", **headers)


def event(request_id: str, prompt: int = 1000, completion: int = 100, **extra) -> dict:
    return {
        "request_id": request_id,
        "model": "gpt-4o",
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion},
        **extra,
    }


def test_it_records_a_batch_and_answers_per_item(client, account, key):
    body = [
        event("a", occurred_at="2026-11-14T09:30:00+02:00", tags={"project": "web", "user": "u1"}),
        event("b", prompt=2000, completion=0),
        {"request_id": "c", "model": "gpt-4o", "usage": {"prompt_tokens": -5}},
    ]
    response = post(client, key, body)
    assert response.status_code == 200
    data = response.json()
    assert (data["created"], data["duplicate"], data["rejected"]) == (2, 0, 1)
    assert [(r["index"], r["request_id"], r["status"]) for r in data["results"]] == [
        (0, "a", "created"),
        (1, "b", "created"),
        (2, "c", "rejected"),
    ]
    assert data["results"][2]["reason"].startswith("usage.prompt_tokens")
    a = UsageRecord.objects.get(request_id="a")
    assert a.bucket_start.isoformat() == "2026-11-14T07:30:00+00:00"  # +02:00 → UTC
    assert a.tags == {"project": "web", "user": "u1"}
    assert a.cost == D("0.0035")  # 1,000 × $2.50/M + 100 × $10/M = 0.0025 + 0.001
    b = UsageRecord.objects.get(request_id="b")
    assert b.bucket_start.isoformat() == "2026-11-15T12:00:00+00:00"  # no occurred_at: now
    assert b.cost == D("0.005")  # 2,000 × $2.50/M
    assert b.account_id == account.pk


def test_it_accepts_an_events_wrapper_and_a_time_without_offset_as_utc(client, key):
    body = {"events": [event("a", occurred_at="2026-11-14T09:30:00")]}
    assert post(client, key, body).json()["created"] == 1
    assert UsageRecord.objects.get().bucket_start.isoformat() == "2026-11-14T09:30:00+00:00"


def test_it_stores_a_repeated_request_id_once(client, key):
    body = [event("a"), event("b"), event("a", prompt=999999)]
    first = post(client, key, body).json()
    assert [r["status"] for r in first["results"]] == ["created", "created", "duplicate"]
    rows = list(
        UsageRecord.objects.order_by("id").values_list("request_id", "cost", "input_tokens")
    )
    second = post(client, key, body).json()
    assert (second["created"], second["duplicate"]) == (0, 3)
    assert (
        list(UsageRecord.objects.order_by("id").values_list("request_id", "cost", "input_tokens"))
        == rows
    )
    day = DailyUsage.objects.get()
    # 2 × (1,000 × $2.50/M + 100 × $10/M) = 2 × 0.0035 = $0.007, counted once
    assert (day.record_count, day.cost) == (2, D("0.007"))


def test_it_reads_whole_provider_bodies_as_events(client, key):
    body = [
        {
            "request_id": "whole",
            "usage": {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "model": "gpt-4o-2024-08-06",
                "choices": [{"message": {"role": "assistant", "content": "secret text"}}],
                "usage": {
                    "prompt_tokens": 1000,
                    "completion_tokens": 10,
                    "prompt_tokens_details": {"cached_tokens": 800},
                },
            },
        },
        {  # the event itself is the body
            "request_id": "flat",
            "id": "chatcmpl-2",
            "model": "gpt-4o",
            "choices": [],
            "usage": {"prompt_tokens": 10, "completion_tokens": 10},
        },
    ]
    data = post(client, key, body).json()
    assert data["created"] == 2, data
    whole = UsageRecord.objects.get(request_id="whole")
    assert whole.model == "gpt-4o-2024-08-06"  # from the body
    # 200 × $2.50/M + 800 × $1.25/M + 10 × $10/M = 0.0005 + 0.001 + 0.0001 = $0.0016
    assert whole.cost == D("0.0016")
    assert "secret text" not in json.dumps(whole.raw)  # usage kept, content not


@pytest.mark.parametrize(
    ("provider_status", "stored"),
    [("completed", "ok"), ("incomplete", "incomplete"), ("cancelled", "incomplete")],
)
def test_it_reads_a_responses_body_posted_as_the_event_with_its_own_status(
    client, key, provider_status, stored
):
    # A Responses API body carries the provider's own "status"; "completed" was refused as
    # not one of ours (ok, failed, incomplete).
    body = {
        "request_id": f"resp-{provider_status}",
        "id": "resp_1",
        "object": "response",
        "status": provider_status,
        "model": "gpt-4o",
        "usage": {"input_tokens": 1000, "output_tokens": 100},
    }

    data = post(client, key, [body]).json()

    assert data["created"] == 1, data
    record = UsageRecord.objects.get(request_id=f"resp-{provider_status}")
    assert record.status == stored
    # 1000 × $2.50/M + 100 × $10/M = 0.0025 + 0.001 = $0.0035
    assert record.cost == D("0.0035")


def test_it_refuses_a_status_it_cannot_read_naming_the_field(client, key):
    data = post(client, key, [event("queued", status="in_progress")]).json()

    assert data["rejected"] == 1
    assert data["results"][0]["reason"] == "status: expected ok, failed or incomplete"


def test_it_reads_an_ollama_final_object_for_an_ollama_account(client):
    ollama = AccountFactory(provider=provider("ollama"))
    raw, _ = ingest_key_create(account=ollama)
    body = [
        {
            "request_id": "o1",
            "model": "llama3.2",
            "created_at": "2026-11-15T11:00:00Z",
            "message": {"role": "assistant", "content": "hi"},
            "done": True,
            "prompt_eval_count": 26,
            "eval_count": 298,
            "total_duration": 4_000_000_000,
        }
    ]
    assert post(client, raw, body).json()["created"] == 1
    record = UsageRecord.objects.get(account=ollama)
    assert (record.input_tokens, record.output_tokens, record.cost) == (26, 298, D("0"))


def test_it_stores_perplexity_cost_exactly_from_decimal_json(client):
    pplx = AccountFactory(provider=provider("perplexity"))
    raw, _ = ingest_key_create(account=pplx)
    text = (
        '[{"request_id": "p1", "model": "sonar", "usage": {"prompt_tokens": 7, '
        '"completion_tokens": 9, "cost": {"total_cost": 0.005016}}}]'
    )
    assert post(client, raw, None, raw=text).json()["created"] == 1
    assert UsageRecord.objects.get().cost == D("0.005016")  # as sent, no float rounding


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer", "Bearer cti_not-a-real-key", "Bearer nope", "Basic abc", "Bearer a b"],
)
def test_it_answers_401_without_a_valid_key(client, account, authorization):
    headers = {"HTTP_AUTHORIZATION": authorization} if authorization else {}
    response = client.post(
        URL, data=json.dumps([event("a")]), content_type="application/json", **headers
    )
    assert response.status_code == 401
    assert UsageRecord.objects.count() == 0


def test_it_refuses_a_revoked_key_an_api_token_and_an_inactive_account(client, account, key):
    from providers.models import IngestKey

    ingest_key_revoke(key=IngestKey.objects.get(account=account))
    assert post(client, key, [event("a")]).status_code == 401
    token, _ = api_token_create(
        user=account.workspace.personal_for
    )  # a valid personal token is not an ingest key
    assert client.get("/api/accounts", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 200
    assert post(client, token, [event("a")]).status_code == 401
    other = AccountFactory(provider=provider("openai"), is_active=False)
    raw, _ = ingest_key_create(account=other)
    assert post(client, raw, [event("a")]).status_code == 401
    assert UsageRecord.objects.count() == 0


def test_it_lets_an_ingest_key_read_nothing(client, account, key):
    for url in [
        "/api/usage",
        "/api/usage/history",
        "/api/usage/daily",
        "/api/accounts",
        f"/api/accounts/{account.pk}",
        f"/api/accounts/{account.pk}/ingest-keys",
        URL,
    ]:
        response = client.get(url, HTTP_AUTHORIZATION=f"Bearer {key}")
        assert response.status_code in (401, 403, 405), url
        assert b"tests" not in response.content  # the key's name
    response = client.post(
        f"/api/accounts/{account.pk}/ingest-keys", {}, HTTP_AUTHORIZATION=f"Bearer {key}"
    )
    assert response.status_code in (401, 403)


def test_it_writes_only_to_the_keys_own_account(client, account, key):
    other = AccountFactory(provider=provider("openai"))
    body = [event("a", account=other.pk, account_id=other.pk)]
    post(client, key, body)
    assert UsageRecord.objects.filter(account=other).count() == 0
    assert UsageRecord.objects.filter(account=account).count() == 1  # extra fields are ignored


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ("{not json", "body"),
        ("", "body"),
        ('{"foo": 1}', "body"),
        ('{"events": "x"}', "events"),
        ("42", "body"),
        ("[NaN]", "body"),
        ('[{"request_id": "a", "usage": {"prompt_tokens": Infinity}}]', "body"),
        ("[" * 100_000, "body"),
        ("[" + "1" * 5000 + "]", "body"),
        (b"[\xff\xfe]", "body"),
    ],
)
def test_it_answers_400_naming_the_field_for_an_unusable_body(client, key, raw, field):
    response = post(client, key, None, raw=raw)
    assert response.status_code == 400
    assert field in response.json()
    assert UsageRecord.objects.count() == 0


def test_it_answers_400_for_more_than_1000_events(client, key):
    response = post(client, key, [event(f"r{i}") for i in range(1001)])
    assert response.status_code == 400
    assert "1000" in response.json()["body"]
    assert UsageRecord.objects.count() == 0
    assert post(client, key, {"events": [event(f"r{i}") for i in range(1001)]}).json().keys() == {
        "events"
    }
    assert post(client, key, [event(f"r{i}") for i in range(1000)]).json()["created"] == 1000


def test_it_never_answers_500_for_garbage_and_keeps_the_good_items(client, key):
    good = [
        event("good-1"),
        # Numbers as strings are read as the numbers they spell.
        {
            "request_id": "good-2",
            "model": "gpt-4o",
            "usage": {"prompt_tokens": "1000", "completion_tokens": "100"},
        },
    ]
    garbage = [
        5,
        "text",
        None,
        [],
        True,
        1.5,
        {},
        {"request_id": None, "model": "gpt-4o", "usage": {"prompt_tokens": 1}},
        {"request_id": 123, "model": "gpt-4o", "usage": {"prompt_tokens": 1}},
        {"request_id": "", "model": "gpt-4o", "usage": {"prompt_tokens": 1}},
        {"request_id": "x" * 201, "model": "gpt-4o", "usage": {"prompt_tokens": 1}},
        {"request_id": "nul\u0000id", "model": "gpt-4o", "usage": {"prompt_tokens": 1}},
        {"request_id": "sur", "model": "gpt-\ud800", "usage": {"prompt_tokens": 1}},
        {"request_id": "nulkey", "model": "gpt-4o", "usage": {"prompt_tokens": 1, "a\u0000": 1}},
        {"request_id": "neg", "model": "gpt-4o", "usage": {"prompt_tokens": -1}},
        {"request_id": "negstr", "model": "gpt-4o", "usage": {"prompt_tokens": "-10"}},
        {"request_id": "frac", "model": "gpt-4o", "usage": {"prompt_tokens": 1.5}},
        {"request_id": "bool", "model": "gpt-4o", "usage": {"prompt_tokens": True}},
        {"request_id": "huge", "model": "gpt-4o", "usage": {"prompt_tokens": 10**30}},
        {"request_id": "huge-exp", "model": "gpt-4o", "usage": {"completion_tokens": "1e400"}},
        {"request_id": "word", "model": "gpt-4o", "usage": {"prompt_tokens": "many"}},
        {"request_id": "nested", "model": "gpt-4o", "usage": {"prompt_tokens": {"a": [1, {}]}}},
        {"request_id": "deep", "model": "gpt-4o", "usage": {"prompt_tokens": 1, "x": _deep(60)}},
        {
            "request_id": "cached",
            "model": "gpt-4o",
            "usage": {"prompt_tokens": 10, "prompt_tokens_details": {"cached_tokens": 20}},
        },
        {"request_id": "usage-str", "model": "gpt-4o", "usage": "lots"},
        {"request_id": "usage-list", "model": "gpt-4o", "usage": [1, 2]},
        {"request_id": "usage-empty", "model": "gpt-4o", "usage": {}},
        {"request_id": "no-usage", "model": "gpt-4o"},
        {"request_id": "no-model", "usage": {"prompt_tokens": 1}},
        {"request_id": "model-num", "model": 7, "usage": {"prompt_tokens": 1}},
        {"request_id": "model-long", "model": "m" * 500, "usage": {"prompt_tokens": 1}},
        {
            "request_id": "date-word",
            "model": "gpt-4o",
            "occurred_at": "yesterday",
            "usage": {"prompt_tokens": 1},
        },
        {
            "request_id": "date-feb30",
            "model": "gpt-4o",
            "occurred_at": "2026-02-30T00:00:00Z",
            "usage": {"prompt_tokens": 1},
        },
        {
            "request_id": "date-num",
            "model": "gpt-4o",
            "occurred_at": 1763200000,
            "usage": {"prompt_tokens": 1},
        },
        {
            "request_id": "date-future",
            "model": "gpt-4o",
            "occurred_at": "9999-12-31T23:59:59Z",
            "usage": {"prompt_tokens": 1},
        },
        {
            "request_id": "date-year1",
            "model": "gpt-4o",
            "occurred_at": "0001-01-01T00:00:00+14:00",
            "usage": {"prompt_tokens": 1},
        },
        {
            "request_id": "date-offset",
            "model": "gpt-4o",
            "occurred_at": "2026-11-14T00:00:00+99:00",
            "usage": {"prompt_tokens": 1},
        },
        {"request_id": "tags-str", "model": "gpt-4o", "tags": "p", "usage": {"prompt_tokens": 1}},
        {
            "request_id": "tags-num",
            "model": "gpt-4o",
            "tags": {"project": 5},
            "usage": {"prompt_tokens": 1},
        },
        {
            "request_id": "tags-odd",
            "model": "gpt-4o",
            "tags": {"team": "x"},
            "usage": {"prompt_tokens": 1},
        },
        {
            "request_id": "status",
            "model": "gpt-4o",
            "status": "great",
            "usage": {"prompt_tokens": 1},
        },
        {
            "request_id": "status-list",
            "model": "gpt-4o",
            "status": [],
            "usage": {"prompt_tokens": 1},
        },
    ]
    response = post(client, key, good + garbage)
    assert response.status_code == 200
    data = response.json()
    statuses = {r["index"]: r for r in data["results"]}
    assert statuses[0]["status"] == statuses[1]["status"] == "created"
    rejected = [r for r in data["results"] if r["index"] >= len(good)]
    assert all(r["status"] == "rejected" and r["reason"] for r in rejected), [
        r for r in rejected if r["status"] != "rejected"
    ]
    assert data["rejected"] == len(garbage)
    assert set(UsageRecord.objects.values_list("request_id", flat=True)) == {"good-1", "good-2"}
    # good-2 read "1000"/"100" as numbers: 1,000 × $2.50/M + 100 × $10/M = $0.0035
    assert UsageRecord.objects.get(request_id="good-2").cost == D("0.0035")
    reasons = {r["request_id"]: r["reason"] for r in rejected if r["request_id"]}
    assert reasons["neg"].startswith("usage.prompt_tokens")
    assert reasons["date-feb30"].startswith("occurred_at")
    assert reasons["tags-odd"].startswith("tags.team")
    assert reasons["no-model"].startswith("model")


def _deep(levels: int):
    value: object = 1
    for _ in range(levels):
        value = {"a": value}
    return value


def test_it_stores_ids_and_tags_exactly_whatever_characters_they_hold(client, key):
    # On PostgreSQL every column travels as an array literal, where quotes, backslashes,
    # commas, braces and the word NULL are syntax. Sent unescaped (no \u in the body), the
    # non-ASCII ids also take the path that skips the per-string check.
    ids = ['quote"d', "back\\slash", "com,ma", "{braced}", "NULL", "naïve-€-😀", 'a\\"b']
    tags = {"project": 'p"{,}\\', "user": "NULL", "feature": "ü"}
    body = json.dumps([event(i, tags=tags) for i in ids], ensure_ascii=False).encode()
    assert b"\\u" not in body
    data = post(client, key, None, raw=body).json()
    assert data["created"] == len(ids), data
    stored = {r.request_id: r for r in UsageRecord.objects.all()}
    assert sorted(stored) == sorted(ids)
    for record in stored.values():
        assert record.tags == tags
        assert record.cost == D("0.0035")  # 1,000 × $2.50/M + 100 × $10/M = 0.0025 + 0.001
    # The roll-up took all seven: 7 × $0.0035 = $0.0245.
    assert DailyUsage.objects.get().cost == D("0.0245")


def test_it_refuses_deep_nesting_in_a_body_without_escapes_too(client, key):
    deep = {"request_id": "deep", "model": "gpt-4o", "usage": {"prompt_tokens": 1, "x": _deep(60)}}
    body = json.dumps([deep, event("fine")]).encode()
    assert b"\\u" not in body  # the path that checks only the shape of what is read
    data = post(client, key, None, raw=body).json()
    assert [r["status"] for r in data["results"]] == ["rejected", "created"]
    assert "nested too deeply" in data["results"][0]["reason"]
    assert list(UsageRecord.objects.values_list("request_id", flat=True)) == ["fine"]


def test_it_keeps_a_huge_number_in_an_unused_usage_field_for_audit(client, key):
    body = [event("big", usage={"prompt_tokens": 1000, "completion_tokens": 100, "x": 10**30})]
    assert post(client, key, body).json()["created"] == 1
    record = UsageRecord.objects.get()
    assert record.raw["usage"]["x"] == 10**30
    assert record.cost == D("0.0035")  # 1,000 × $2.50/M + 100 × $10/M


def test_a_remembered_key_writes_nothing_once_revoked_or_its_account_deactivated(client, account):
    # Each process remembers a key for RECENT_KEY_SECONDS, but the write checks it again in
    # the same statement: revocation stops ingestion at once, in every process.
    from providers.models import IngestKey

    raw, key = ingest_key_create(account=account, name="remembered")
    assert post(client, raw, [event("before")]).json()["created"] == 1  # now remembered
    IngestKey.objects.filter(pk=key.pk).update(revoked_at="2026-11-15T11:59:00Z")  # elsewhere
    response = post(client, raw, [event("after-revoke")])
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="ingest"'

    raw2, _ = ingest_key_create(account=account, name="second")
    assert post(client, raw2, [event("before-2")]).json()["created"] == 1
    type(account).objects.filter(pk=account.pk).update(is_active=False)
    assert post(client, raw2, [event("after-deactivate")]).status_code == 401
    # A batch whose items are all rejected is refused too, not answered 200.
    assert post(client, raw2, [{"request_id": "bad"}]).status_code == 401
    assert sorted(UsageRecord.objects.values_list("request_id", flat=True)) == [
        "before",
        "before-2",
    ]


def test_unstorable_text_without_any_escape_is_rejected_per_item_not_a_500(client, key):
    # json.loads also reads UTF-16 bodies, and reads UTF-8-style surrogate bytes (ED A0 80)
    # as a lone surrogate: neither needs a \u escape, so neither may skip the text check.
    utf16 = json.dumps([event("nul\x00id"), event("fine-1")], ensure_ascii=False)
    response = post(client, key, None, raw=utf16.encode("utf-16"))
    assert response.status_code == 200
    assert [r["status"] for r in response.json()["results"]] == ["rejected", "created"]
    surrogate = (
        b'[{"request_id": "sur", "model": "gpt-\xed\xa0\x80", "usage": {"prompt_tokens": 1}}, '
    )
    surrogate += json.dumps(event("fine-2")).encode() + b"]"
    response = post(client, key, None, raw=surrogate)
    assert response.status_code == 200
    assert [r["status"] for r in response.json()["results"]] == ["rejected", "created"]
    assert sorted(UsageRecord.objects.values_list("request_id", flat=True)) == ["fine-1", "fine-2"]


def test_a_vanishingly_small_audio_duration_is_stored_as_zero_not_a_500(client, key):
    body = [
        {
            "request_id": "tiny-audio",
            "model": "gpt-4o",
            "usage": {"input_tokens": 10, "audio_seconds": "1e-99999"},
        }
    ]
    assert post(client, key, body).json()["created"] == 1
    assert UsageRecord.objects.get().audio_seconds == D("0")  # kept to the column's 3 places
