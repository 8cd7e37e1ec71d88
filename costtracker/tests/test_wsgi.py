"""The WSGI entry point: ingest-key traffic takes the light handler, pages the full stack."""

from __future__ import annotations

import json

import pytest
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from werkzeug.test import Client

from costtracker.wsgi import application
from providers.services import ingest_key_create
from providers.tests.factories import AccountFactory, provider
from usage.models import UsageRecord

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _keep_the_test_transaction():
    # The real handler closes "old" connections around each request, which would close the
    # test's open transaction on PostgreSQL; Django's own test client unhooks this the same way.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def test_it_serves_ingestion_through_the_light_handler():
    account = AccountFactory(provider=provider("openai"))
    raw, _ = ingest_key_create(account=account)
    body = [{"request_id": "w1", "model": "gpt-4o", "usage": {"prompt_tokens": 3}}]
    response = Client(application).post(
        "/api/usage/events",
        data=json.dumps(body),
        content_type="application/json",
        headers={"Authorization": f"Bearer {raw}", "Host": "testserver"},
    )
    assert response.status_code == 200, response.get_data()
    assert response.json["created"] == 1
    assert UsageRecord.objects.get().request_id == "w1"
    # No session or CSRF machinery ran for it.
    assert "Set-Cookie" not in response.headers


def test_it_serves_otlp_exports_through_the_light_handler():
    account = AccountFactory(provider=provider("openai"))
    raw, _ = ingest_key_create(account=account)
    counts = {"gen_ai.usage.input_tokens": "3", "gen_ai.usage.output_tokens": "1"}
    attributes = [
        {"key": "gen_ai.provider.name", "value": {"stringValue": "openai"}},
        {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o"}},
        *({"key": k, "value": {"intValue": v}} for k, v in counts.items()),
    ]
    span = {"traceId": "01" * 16, "spanId": "02" * 8, "attributes": attributes}
    body = {"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}
    response = Client(application).post(
        "/v1/traces",
        data=json.dumps(body),
        content_type="application/json",
        headers={"Authorization": f"Bearer {raw}", "Host": "testserver"},
    )
    assert response.status_code == 200, response.get_data()
    assert response.json == {}
    assert UsageRecord.objects.get().request_id == f"otel:{'01' * 16}:{'02' * 8}"
    assert "Set-Cookie" not in response.headers


def test_it_still_checks_allowed_hosts_on_the_light_handler():
    response = Client(application).post(
        "/proxy/openai/v1/chat/completions", data="{}", headers={"Host": "evil.example"}
    )
    assert response.status_code == 400


def test_it_gives_pages_the_full_middleware_stack():
    response = Client(application).get("/login/", headers={"Host": "testserver"})
    assert response.status_code == 200
    assert "csrftoken" in response.headers.get("Set-Cookie", "")
    assert response.headers["X-Frame-Options"] == "DENY"
