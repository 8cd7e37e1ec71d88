"""Errors a person sees: one human line, the stored text on demand (usage/templatetags/errors.py).

The same include serves the accounts list, the live sync status, the sync history, the
channel deliveries and the connection test.
"""

from __future__ import annotations

import re
import socket
from datetime import UTC, date, datetime

import pytest
from django.template import Context, Template
from django.urls import reverse

from providers.models import SyncStatus
from providers.tests.factories import AccountFactory, provider
from usage.models import SyncRun
from usage.templatetags.errors import error_describe
from usage.tests.messy_data import DNS_ERROR

POOL = (
    "HTTPSConnectionPool(host='api.anthropic.com', port=443): Max retries exceeded with url: /v1/x"
)
CASES = [
    # (stored message, error class, summary shown)
    (DNS_ERROR, "", "Couldn't reach api.openai.com: DNS lookup failed"),
    (DNS_ERROR, "network", "Couldn't reach api.openai.com: DNS lookup failed"),
    (
        "provider unreachable: " + POOL + " (Caused by NewConnectionError('<urllib3.connection."
        "HTTPSConnection object at 0x7f>: Failed to establish a new connection: [Errno 111] "
        "Connection refused'))",
        "ProviderError",
        "Couldn't reach api.anthropic.com: connection refused",
    ),
    (
        "provider unreachable: connect timeout (" + POOL + " (Caused by ConnectTimeoutError("
        "<urllib3.connection.HTTPSConnection object at 0x7f>, 'Connection to api.anthropic.com "
        "timed out. (connect timeout=5)')))",
        "timeout",
        "Couldn't reach api.anthropic.com: connection timed out",
    ),
    (
        "provider timed out: HTTPSConnectionPool(host='api.github.com', port=443): Read timed "
        "out. (read timeout=30)",
        "",
        "Api.github.com did not answer in time (timed out)",
    ),
    (
        "provider unreachable: " + POOL + " (Caused by SSLError(SSLCertVerificationError(1, "
        "'[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed')))",
        "network",
        "Couldn't reach api.anthropic.com: TLS/certificate error",
    ),
    (
        "provider unreachable: ('Connection aborted.', RemoteDisconnected('Remote end closed "
        "connection without response'))",
        "network",
        "Couldn't reach the provider: the connection was dropped",
    ),
    ("provider unreachable: " + POOL, "", "Couldn't reach api.anthropic.com"),
    ("timeout after 3 tries", "timeout", "The provider did not answer in time (timed out)"),
    (
        'key rejected (401): invalid x-api-key\nResponse excerpt: {"error": "x"}',
        "auth",
        "Key rejected (401): invalid x-api-key",
    ),
    ("", "server_error", "The provider had an internal error"),
    ("x" * 500, "", "X" + "x" * 158 + "…"),
]


@pytest.mark.parametrize(("message", "error_class", "summary"), CASES)
def test_it_turns_a_stored_error_into_one_human_line(message, error_class, summary):
    shown = error_describe(message, error_class)
    assert shown.summary == summary
    assert "\n" not in shown.summary and len(shown.summary) <= 160
    assert shown.tone == "error"
    # The full text is kept for "Details", unless the line already says it all.
    assert shown.detail == (message if message != summary else "")


def test_it_says_not_available_neutrally_for_an_unsupported_test():
    shown = error_describe("test not supported for Perplexity (no account API)")
    assert (shown.summary, shown.tone) == ("Not available for this provider", "neutral")
    assert error_describe("", "unsupported").summary == "Not available for this provider"
    # A provider's own 4xx that happens to say "not supported" is still a failure.
    rejected = error_describe("request rejected (400): model not supported")
    assert rejected.tone == "error"


def test_it_shows_nothing_for_no_error():
    assert error_describe(None).summary == ""
    html = Template("{% error_message '' %}").render(Context())
    assert html.strip() == ""


def test_it_renders_the_summary_with_the_details_on_demand():
    html = Template("{% error_message msg cls %}").render(
        Context({"msg": DNS_ERROR + " <b>", "cls": "network"})
    )
    summary = re.search(r'<span class="error-summary">(.*?)</span>', html).group(1)
    assert summary == "Couldn&#x27;t reach api.openai.com: DNS lookup failed"
    assert '<details class="error-details"><summary>Details</summary><pre>' in html
    assert "NameResolutionError" in html.split("<details", 1)[1]  # only inside the details
    assert "&lt;b&gt;" in html and "<b>" not in html  # escaped


@pytest.fixture
def owner_client(client):
    def log_in(account):
        client.force_login(account.workspace.personal_for)
        return client

    return log_in


@pytest.mark.django_db
def test_the_accounts_page_shows_a_dns_failure_as_one_line(owner_client):
    account = AccountFactory(provider=provider("openai"))
    account.last_sync_status = SyncStatus.FAILED
    account.last_sync_at = datetime(2026, 8, 3, 11, 30, tzinfo=UTC)
    account.last_sync_error = DNS_ERROR
    account.save()

    html = owner_client(account).get(reverse("account-list")).content.decode()

    row = html.split(f'id="account-{account.pk}"', 1)[1]
    before_details = row.split("<details", 1)[0]
    assert "Couldn&#x27;t reach api.openai.com: DNS lookup failed" in before_details
    assert "HTTPSConnectionPool" not in before_details
    assert "HTTPSConnectionPool" in row.split("</details>", 1)[0]


@pytest.mark.django_db
def test_the_sync_history_and_live_status_show_the_same_line(owner_client):
    account = AccountFactory(provider=provider("openai"))
    run = SyncRun.objects.create(
        account=account,
        window_start=date(2026, 8, 1),
        window_end=date(2026, 8, 3),
        status=SyncRun.Status.FAILED,
        finished_at=datetime(2026, 8, 3, 11, 0, tzinfo=UTC),
        error_class="network",
        error_message=DNS_ERROR,
    )
    client = owner_client(account)
    line = "Couldn&#x27;t reach api.openai.com: DNS lookup failed"

    history = client.get(reverse("account-sync-history", args=[account.pk])).content.decode()
    status = client.get(
        reverse("account-sync-status", args=[account.pk]) + f"?run={run.pk}"
    ).content.decode()

    for html in (history, status):
        assert f'<span class="error-summary">{line}</span>' in html
        assert "HTTPSConnectionPool" not in html.split("<details", 1)[0]


@pytest.mark.django_db
def test_it_shows_a_refused_connection_test_as_one_line(owner_client, monkeypatch, settings):
    # A real refused connection on loopback, through the adapter and providers.http.
    monkeypatch.setattr("providers.http.BACKOFF_BASE", 0)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again when the block ends: nothing listens
    settings.GROQ_BASE_URL = f"http://127.0.0.1:{port}"
    account = AccountFactory(provider=provider("groq"), keys={"api_key": "gsk_test_0123456789"})

    response = owner_client(account).post(reverse("account-test", args=[account.pk]))

    html = response.content.decode()
    assert (
        '<span class="error-message error"><span class="error-summary">'
        "Couldn&#x27;t reach 127.0.0.1: connection refused</span>" in html
    )
    assert "Max retries exceeded" in html.split("<details", 1)[1]


@pytest.mark.django_db
def test_it_shows_an_unsupported_connection_test_as_neutral(owner_client):
    account = AccountFactory(
        provider=provider("perplexity"), keys={"api_key": "pplx-test-0123456789"}
    )

    html = owner_client(account).post(reverse("account-test", args=[account.pk])).content.decode()

    assert '<span class="error-message neutral">' in html
    assert "Not available for this provider" in html
    assert "✗" not in html
