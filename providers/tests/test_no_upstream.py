"""A provider whose upstream base URL setting is empty: the proxy and the connection test say
which setting the operator must set, and nothing is sent anywhere (no default host guessed)."""

from __future__ import annotations

import pytest

from providers.adapters.ollama import OllamaAdapter
from providers.connection import account_test_connection, adapter_for_account
from providers.http import ErrorClass
from providers.services import ingest_key_create
from providers.tests.factories import AccountFactory, provider
from usage.models import UsageRecord

pytestmark = pytest.mark.django_db


def test_it_answers_503_naming_the_setting_and_sends_nothing(client, settings, httpserver):
    settings.GROQ_BASE_URL = ""
    account = AccountFactory(provider=provider("groq"), keys={"api_key": "gsk-upstream-0001"})
    raw, _ = ingest_key_create(account=account)

    reply = client.post(
        "/proxy/groq/v1/chat/completions",
        data=b'{"model": "llama-3.1-8b-instant", "messages": []}',
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {raw}",
    )

    assert reply.status_code == 503
    assert reply.json()["error"] == {
        "type": "upstream_not_configured",
        "message": "No upstream is configured for Groq: the server's operator sets GROQ_BASE_URL.",
    }
    assert reply["X-Should-Retry"] == "false"  # the OpenAI/Anthropic SDKs would retry a 503
    assert httpserver.log == []
    assert not UsageRecord.objects.filter(account=account).exists()  # nothing was forwarded


def test_it_still_checks_the_ingest_key_first(client, settings):
    settings.GROQ_BASE_URL = ""

    reply = client.post("/proxy/groq/v1/chat/completions", data=b"{}", content_type="x/y")

    assert reply.status_code == 401


def test_the_connection_test_names_the_setting_when_no_host_is_known(
    settings, monkeypatch, httpserver
):
    settings.OLLAMA_BASE_URL = ""
    monkeypatch.setattr(OllamaAdapter, "default_base_url", "")  # an adapter with no default
    account = AccountFactory(provider=provider("ollama"))

    result = account_test_connection(account=account)

    assert (result.ok, result.http_status, result.error_class) == (False, 400, ErrorClass.CONFIG)
    assert result.message == (
        "No upstream is configured for Ollama (local LLMs): "
        "the server's operator sets OLLAMA_BASE_URL."
    )
    assert httpserver.log == []


def test_an_adapter_default_still_serves_an_empty_setting(settings, httpserver):
    settings.GROQ_BASE_URL = ""  # the adapter falls back to its public API, as before
    account = AccountFactory(provider=provider("groq"), keys={"api_key": "gsk-upstream-0001"})

    assert adapter_for_account(account).base_url == "https://api.groq.com"
