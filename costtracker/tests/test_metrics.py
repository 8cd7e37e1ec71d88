"""/metrics (costtracker/metrics.py, costtracker/ops_views.py): off by default, protected,
Prometheus text whose figures move with proxied calls, ingested events and sync runs."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
import time_machine
from prometheus_client.parser import text_string_to_metric_families

from providers.services import ingest_key_create
from providers.tests.factories import AccountFactory, provider
from usage.models import Price
from usage.services.prices import EPOCH

TOKEN = "metrics-token-s3cret-4711"
PER_M = Decimal("0.000001")


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of a scrape, by name and labels: parsed as Prometheus would."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(found: dict, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def label_values(text: str) -> set[str]:
    return {
        v
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        for v in sample.labels.values()
    }


def scrape(client, **headers) -> str:
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}", **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    return response.content.decode()


@pytest.fixture
def enabled(settings):
    settings.METRICS_ENABLED = True
    settings.METRICS_TOKEN = TOKEN


# --- off by default, and protected ---------------------------------------------------------


@pytest.mark.django_db
def test_it_hides_metrics_unless_enabled(client):
    assert client.get("/metrics").status_code == 404


@pytest.mark.django_db
def test_it_wants_the_bearer_token(client, enabled):
    missing = client.get("/metrics")
    assert missing.status_code == 401
    assert missing["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Basic {TOKEN}").status_code == 401
    assert TOKEN not in client.get("/metrics", HTTP_AUTHORIZATION="Bearer x").content.decode()
    found = samples(scrape(client))
    assert value(found, "costtracker_metrics_database_up") == 1


@pytest.mark.django_db
def test_without_a_token_it_answers_direct_loopback_requests_only(client, settings):
    settings.METRICS_ENABLED = True  # and no METRICS_TOKEN
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="::1").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 403
    # A reverse proxy on the same machine: loopback to us, but from anywhere really.
    forwarded = client.get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.9")
    assert forwarded.status_code == 403


# --- the figures move ------------------------------------------------------------------------


@pytest.mark.django_db
@time_machine.travel("2026-11-15 12:00:00Z", tick=False)
def test_an_ingestion_post_moves_the_counters_and_the_spend(client, enabled):
    Price.objects.create(
        provider=provider("openai"),
        model="gpt-4o",
        valid_from=EPOCH,
        input_per_token=Decimal("2.50") * PER_M,
        output_per_token=Decimal("10") * PER_M,
    )
    raw_key, _ = ingest_key_create(account=AccountFactory(provider=provider("openai")))
    before = samples(scrape(client))
    tags = {"project": "project-okapi-secret", "user": "alice@example.test"}
    body = [
        {
            "request_id": "req-1",
            "model": "gpt-4o",
            "usage": {"prompt_tokens": 1000, "completion_tokens": 100},
            "tags": tags,
        },
        {"request_id": "req-2", "model": "gpt-4o", "usage": {"prompt_tokens": 2000}},
        {"request_id": "req-3", "model": "gpt-4o", "usage": {"prompt_tokens": -5}},
        {"request_id": "req-1", "model": "gpt-4o", "usage": {"prompt_tokens": 1}},
    ]
    response = client.post(
        "/api/usage/events",
        data=json.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {raw_key}",
    )
    assert response.status_code == 200
    assert (response.json()["created"], response.json()["duplicate"]) == (2, 1)

    text = scrape(client)
    after = samples(text)

    def moved(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    events = "costtracker_ingest_events_total"
    assert moved(events, provider="openai", outcome="accepted") == 2
    assert moved(events, provider="openai", outcome="duplicate") == 1
    assert moved(events, provider="openai", outcome="rejected") == 1
    route = {"route": "api/usage/events", "method": "POST"}
    assert moved("costtracker_http_requests_total", status="200", **route) == 1
    assert moved("costtracker_http_request_duration_seconds_count", **route) == 1
    # req-1: 1000 × 2.50/M + 100 × 10/M = 0.0025 + 0.001 = 0.0035
    # req-2: 2000 × 2.50/M = 0.005;  0.0035 + 0.005 = 0.0085 this month, estimated
    spend = value(
        after, "costtracker_spend_month_to_date_usd", provider="openai", source="estimated"
    )
    assert spend == pytest.approx(0.0085)
    # Labels hold no key, token, tag value or model name.
    leaked = {raw_key, TOKEN, "gpt-4o", *tags.values()}
    assert not any(secret in v for v in label_values(text) for secret in leaked)
    assert not any(secret in text for secret in (raw_key, TOKEN, *tags.values()))


@pytest.mark.django_db
def test_a_route_is_labelled_by_its_pattern_never_its_path(client, enabled):
    client.get("/api/accounts/987654")  # an id in the path (a 401: not signed in)
    client.get("/no/such/page-with-a-name-in-it")
    text = scrape(client)
    assert 'route="api/accounts/<int:pk>"' in text
    assert 'route="<unmatched>"' in text
    assert "987654" not in text
    assert "page-with-a-name" not in text


@pytest.mark.django_db
@time_machine.travel("2026-08-03 12:00:00+00:00", tick=False)
def test_sync_runs_are_counted_by_outcome_and_error_class(client, enabled, settings, httpserver):
    from usage.services.sync import usage_sync
    from usage.tests.test_sync import ANTHROPIC_COSTS, make_account, point_settings_at, serve_openai

    point_settings_at(settings, httpserver)
    serve_openai(httpserver)
    httpserver.expect_request(ANTHROPIC_COSTS).respond_with_json(
        {"error": {"message": "invalid x-api-key"}}, status=401
    )
    before = samples(scrape(client))

    ok = usage_sync(account_id=make_account("openai").pk)
    refused = usage_sync(account_id=make_account("anthropic").pk)
    assert (ok.status, refused.status, refused.error_class) == ("succeeded", "failed", "auth")

    after = samples(scrape(client))
    runs = "costtracker_sync_runs_total"
    for labels, n in [
        ({"outcome": "succeeded", "error_class": "none"}, 1),
        ({"outcome": "failed", "error_class": "auth"}, 1),
    ]:
        assert value(after, runs, **labels) - value(before, runs, **labels) == n


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_proxied_call_moves_the_overhead_histogram(live_server, settings, httpserver):
    import requests

    from providers.tests.test_proxy import (
        BASE_URL_SETTINGS,
        MESSAGES,
        OPENAI_CHAT_BYTES,
        connect,
        gpt_4o_mini_price,
        openai_client,
    )

    settings.METRICS_ENABLED, settings.METRICS_TOKEN = True, TOKEN
    for name in BASE_URL_SETTINGS:
        setattr(settings, name, httpserver.url_for("/").rstrip("/"))
    _, raw = connect("openai")
    gpt_4o_mini_price()
    httpserver.expect_request("/v1/chat/completions").respond_with_data(
        OPENAI_CHAT_BYTES, content_type="application/json"
    )

    def scrape_live() -> str:
        # Through the live server too: its thread alone uses the test database.
        response = requests.get(
            f"{live_server.url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
        )
        assert response.status_code == 200
        return response.text

    before = samples(scrape_live())

    proxy = openai_client(live_server, "openai", raw, default_headers={"X-Tracker-Project": "p-x9"})
    proxy.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    text = scrape_live()
    after = samples(text)
    count = "costtracker_proxy_overhead_seconds_count"
    for phase in ("forward", "record"):
        labels = {"provider": "openai", "phase": phase}
        assert value(after, count, **labels) - value(before, count, **labels) == 1
        # Overhead is time, not the provider's: under a second even on a slow machine.
        assert value(after, "costtracker_proxy_overhead_seconds_sum", **labels) < 1
    assert raw not in text
    assert "p-x9" not in text
