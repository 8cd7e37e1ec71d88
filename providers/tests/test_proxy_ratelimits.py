"""Rate-limit headers and 429s through the real proxy: official SDKs as clients, a fake
provider on loopback; the state lands in the database at the flush, in GET /api/ratelimits
and on the account page."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import anthropic
import openai
import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from rest_framework.test import APIClient

from providers.models import RateLimitHit, RateLimitState
from providers.tests.test_proxy import (  # noqa: F401 - fixtures are used by name
    ANTHROPIC_MESSAGE,
    MESSAGES,
    NOW,
    OPENAI_CHAT_BYTES,
    _fresh_price_cache,
    _now,
    connect,
    finished_fixture,
    openai_client,
    upstream_fixture,
)

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)
FIXTURES = Path(__file__).parent / "fixtures"
GROQ_MODEL = "llama-3.3-70b-versatile"
GROQ_CHAT = {
    "id": "chatcmpl-groq-rl-1",
    "object": "chat.completion",
    "created": 1785600000,
    "model": GROQ_MODEL,
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"}}],
    "usage": {"prompt_tokens": 84, "completion_tokens": 12, "total_tokens": 96},
}


def fixture_headers(kind: str, name: str = "ratelimit_headers") -> dict[str, str]:
    return json.loads((FIXTURES / kind / f"{name}.json").read_text())


def fixture_bytes(kind: str, name: str) -> bytes:
    return (FIXTURES / kind / name).read_bytes()


def api_rows(of, **query) -> list[dict]:
    client = APIClient()
    client.force_login(of.workspace.personal_for)
    response = client.get(reverse("api-ratelimits"), query)
    assert response.status_code == 200, response.content
    return response.json()


def dims(row: dict) -> dict[str, dict]:
    return {d["name"]: d for d in row["dimensions"]}


def test_it_keeps_openais_rate_limits_from_a_proxied_call(live_server, upstream, ratelimit_tracker):
    account, raw = connect("openai")
    upstream.expect_request("/v1/chat/completions", method="POST").respond_with_data(
        OPENAI_CHAT_BYTES, content_type="application/json", headers=fixture_headers("openai")
    )
    client = openai_client(live_server, "openai", raw)

    reply = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)

    assert reply.headers["x-ratelimit-remaining-tokens"] == "150000"  # still passed on
    assert not RateLimitState.objects.exists()  # in memory until the flush
    assert ratelimit_tracker.flush()
    state = RateLimitState.objects.get(account=account)
    assert state.model == "gpt-4o-mini-2024-07-18"  # the model the answer named
    assert (state.requests_limit, state.requests_remaining) == (500, 499)
    assert (state.tokens_limit, state.tokens_remaining) == (200000, 150000)
    # Durations count from the answer: "120ms" and "6m0s" after it was observed.
    assert state.requests_reset_at == state.observed_at + timedelta(milliseconds=120)
    assert state.tokens_reset_at == state.observed_at + timedelta(minutes=6)
    assert state.input_tokens_limit is None
    assert not RateLimitHit.objects.exists()

    (row,) = api_rows(account)
    assert (row["account"], row["provider"], row["model"]) == (
        account.pk,
        "openai",
        "gpt-4o-mini-2024-07-18",
    )
    # 150000 / 200000 = 75.0 %; 499 / 500 = 99.8 %
    assert dims(row)["tokens"]["percent_remaining"] == "75.0"
    assert dims(row)["requests"]["percent_remaining"] == "99.8"
    assert row["tightest"] == "tokens"
    assert row["stale"] is False
    assert row["rate_limited_total"] == 0


def test_it_counts_groqs_429_with_its_retry_after(live_server, upstream, ratelimit_tracker):
    seconds = [100.0]
    ratelimit_tracker.clock = lambda: seconds[0]  # the flush's clock, moved by hand
    account, raw = connect("groq")
    upstream.expect_ordered_request("/openai/v1/chat/completions", method="POST").respond_with_data(
        json.dumps(GROQ_CHAT), content_type="application/json", headers=fixture_headers("groq")
    )
    upstream.expect_ordered_request("/openai/v1/chat/completions", method="POST").respond_with_data(
        fixture_bytes("groq", "error_429.json"),
        status=429,
        content_type="application/json",
        headers=fixture_headers("groq", "ratelimit_429_headers"),
    )
    client = openai_client(live_server, "groq", raw, suffix="openai/v1")

    client.chat.completions.create(model=GROQ_MODEL, messages=MESSAGES)
    assert ratelimit_tracker.flush()
    first = RateLimitState.objects.get(account=account)
    assert (first.tokens_limit, first.tokens_remaining) == (6000, 500)
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model=GROQ_MODEL, messages=MESSAGES)
    assert caught.value.response.headers["retry-after"] == "2"  # the client still gets it

    assert not ratelimit_tracker.flush()  # within a second of the last: held
    seconds[0] += 1
    assert ratelimit_tracker.flush()
    state = RateLimitState.objects.get(account=account)
    assert state.model == GROQ_MODEL  # the 429 named none: the request's model
    assert (state.tokens_remaining, state.requests_remaining) == (0, 14398)
    assert state.retry_at == state.observed_at + timedelta(seconds=2)
    assert state.observed_at > first.observed_at
    hit = RateLimitHit.objects.get(account=account)
    assert (hit.model, hit.source, hit.count) == (GROQ_MODEL, "proxy", 1)

    (row,) = api_rows(account, account=account.pk)
    assert row["tightest"] == "tokens"
    assert dims(row)["tokens"]["percent_remaining"] == "0.0"  # 0 / 6000
    # 14398 / 14400 = 99.986… → 99.9 (rounded down: headroom is never overstated)
    assert dims(row)["requests"]["percent_remaining"] == "99.9"
    assert row["rate_limited_total"] == 1
    assert row["rate_limited_by_day"][-1] == {"day": NOW.date().isoformat(), "count": 1}
    assert [d["count"] for d in row["rate_limited_by_day"][:-1]] == [0] * 6
    assert row["retry_at"] is not None

    page = Client()
    page.force_login(account.workspace.personal_for)
    html = page.get(reverse("account-detail", args=[account.pk])).content.decode()
    assert "Rate limits" in html and GROQ_MODEL in html
    assert "0.0% left" in html and "tightest" in html
    assert 'data-testid="rate-limit-429-total">1<' in html


def test_it_keeps_anthropics_four_dimensions_and_a_429(live_server, upstream, ratelimit_tracker):
    account, raw = connect("anthropic")
    upstream.expect_ordered_request("/v1/messages", method="POST").respond_with_data(
        json.dumps(ANTHROPIC_MESSAGE),
        content_type="application/json",
        headers=fixture_headers("anthropic"),
    )
    upstream.expect_ordered_request("/v1/messages", method="POST").respond_with_data(
        fixture_bytes("anthropic", "error_429.json"),
        status=429,
        content_type="application/json",
        headers=fixture_headers("anthropic", "ratelimit_429_headers"),
    )
    client = anthropic.Anthropic(
        base_url=f"{live_server.url}/proxy/anthropic", api_key=raw, max_retries=0
    )

    client.messages.create(model="claude-sonnet-4-6", max_tokens=100, messages=MESSAGES)
    with pytest.raises(anthropic.RateLimitError):
        client.messages.create(model="claude-sonnet-4-6", max_tokens=100, messages=MESSAGES)
    assert ratelimit_tracker.flush()  # both answers in one flush

    state = RateLimitState.objects.get(account=account, model="claude-sonnet-4-6")
    assert (state.requests_limit, state.requests_remaining) == (50, 0)  # the 429's
    # Dimensions the 429 did not send are the 200's, not wiped.
    assert (state.input_tokens_limit, state.input_tokens_remaining) == (50000, 40000)
    assert (state.output_tokens_limit, state.output_tokens_remaining) == (10000, 9770)
    assert state.tokens_reset_at.isoformat() == "2026-08-21T12:01:06+00:00"
    assert state.retry_at == state.observed_at + timedelta(seconds=30)
    assert RateLimitHit.objects.get(account=account).count == 1

    (row,) = api_rows(account)
    assert row["tightest"] == "requests"  # 0 / 50 = 0.0 %
    # 9770 / 10000 = 97.7 %; 40000 / 50000 = 80.0 %; 80000 / 90000 = 88.8… → 88.8
    assert dims(row)["output_tokens"]["percent_remaining"] == "97.7"
    assert dims(row)["input_tokens"]["percent_remaining"] == "80.0"
    assert dims(row)["tokens"]["percent_remaining"] == "88.8"


def test_the_proxy_writes_no_rate_limit_row_per_call(upstream, ratelimit_tracker):
    account, raw = connect("openai")
    upstream.expect_request("/v1/chat/completions", method="POST").respond_with_data(
        OPENAI_CHAT_BYTES, content_type="application/json", headers=fixture_headers("openai")
    )
    upstream.expect_request("/v1/models", method="GET").respond_with_json({"data": []})
    client = Client()
    body = json.dumps({"model": "gpt-4o-mini", "messages": MESSAGES})

    with CaptureQueriesContext(connection) as calls:
        for _ in range(5):
            response = client.post(
                "/proxy/openai/v1/chat/completions",
                body,
                content_type="application/json",
                HTTP_AUTHORIZATION=f"Bearer {raw}",
            )
            assert response.status_code == 200
            b"".join(response.streaming_content)  # the record is written as the body ends

    assert not [q for q in calls.captured_queries if "ratelimit" in q["sql"].lower()]
    with CaptureQueriesContext(connection) as flushed:
        assert ratelimit_tracker.flush()
    writes = [q for q in flushed.captured_queries if "ratelimit" in q["sql"].lower()]
    assert len(writes) == 1  # one upsert for all five calls (no 429s: no count statement)
    assert RateLimitState.objects.get(account=account).requests_remaining == 499


def test_it_reads_a_streamed_answers_headers(live_server, upstream, ratelimit_tracker, finished):
    from werkzeug import Response

    from providers.tests.test_proxy_streaming import OPENAI_STREAM

    account, raw = connect("groq")
    upstream.expect_request("/openai/v1/chat/completions", method="POST").respond_with_handler(
        lambda request: Response(
            OPENAI_STREAM, mimetype="text/event-stream", headers=fixture_headers("groq")
        )
    )
    client = openai_client(live_server, "groq", raw, suffix="openai/v1")

    chunks = list(client.chat.completions.create(model=GROQ_MODEL, messages=MESSAGES, stream=True))

    assert chunks
    assert finished.wait(10)  # the relay notes the answer when the stream ends
    assert ratelimit_tracker.flush()
    state = RateLimitState.objects.get(account=account)
    assert (state.tokens_limit, state.tokens_remaining) == (6000, 500)
    assert (state.requests_limit, state.requests_remaining) == (14400, 14399)
