"""The WSGI entry point: ingest-key traffic takes the light handler, pages the full stack."""

from __future__ import annotations

import json

import pytest
from werkzeug.test import Client

from costtracker.wsgi import application
from providers.services import ingest_key_create
from providers.tests.factories import AccountFactory, provider
from usage.models import UsageRecord

pytestmark = pytest.mark.django_db


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
