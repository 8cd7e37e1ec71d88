from __future__ import annotations

import json
import socket
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from alerts.anomalies import Anomaly
from alerts.webhooks import (
    WebhookURLError,
    generic_payload,
    slack_payload,
    validate_webhook_url,
)


def _resolver(*addresses: str, calls: list | None = None):
    """A stand-in for socket.getaddrinfo returning the given addresses, recording each call."""

    def resolve(host, port, *args, **kwargs):
        if calls is not None:
            calls.append((host, port))
        infos = []
        for address in addresses:
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            sockaddr = (address, port, 0, 0) if family == socket.AF_INET6 else (address, port)
            infos.append((family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", sockaddr))
        return infos

    return resolve


def _failing_resolver(host, port, *args, **kwargs):
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


def test_it_accepts_a_public_https_url():
    calls: list = []
    validate_webhook_url(
        "https://hooks.example.com/services/T0/B0/x",
        resolver=_resolver("93.184.215.14", calls=calls),
    )
    assert calls == [("hooks.example.com", 443)]


def test_it_resolves_with_the_explicit_port():
    calls: list = []
    validate_webhook_url(
        "http://example.com:8080/hook", resolver=_resolver("93.184.215.14", calls=calls)
    )
    assert calls == [("example.com", 8080)]


def test_it_accepts_a_public_ipv6_address():
    validate_webhook_url("https://example.com/", resolver=_resolver("2606:4700::1111"))


@pytest.mark.parametrize(
    "url", ["ftp://example.com/", "file:///etc/passwd", "gopher://x/", "example.com/hook"]
)
def test_it_rejects_other_schemes(url):
    with pytest.raises(WebhookURLError, match="http:// or https://"):
        validate_webhook_url(url, resolver=_resolver("93.184.215.14"))


@pytest.mark.parametrize("url", ["https://", "https:///path", "http://:80/"])
def test_it_requires_a_host(url):
    with pytest.raises(WebhookURLError, match="host name"):
        validate_webhook_url(url, resolver=_resolver("93.184.215.14"))


def test_it_rejects_an_invalid_port():
    with pytest.raises(WebhookURLError, match="invalid port"):
        validate_webhook_url("https://example.com:99999/", resolver=_resolver("93.184.215.14"))


def test_it_rejects_whitespace_and_control_characters():
    with pytest.raises(WebhookURLError, match="spaces or control"):
        validate_webhook_url("https://exa\nmple.com/", resolver=_resolver("93.184.215.14"))


def test_it_rejects_an_empty_url():
    with pytest.raises(WebhookURLError, match="Enter a webhook URL"):
        validate_webhook_url("  ")


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.1.2.3", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped IPv6
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("169.254.169.254", "link-local"),  # cloud metadata service
        ("fe80::1", "link-local"),
        ("10.0.0.5", "private"),
        ("172.16.3.4", "private"),
        ("192.168.1.10", "private"),
        ("::ffff:10.0.0.1", "private"),
        ("fd12:3456::1", "private"),  # unique local
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "non-public"),  # carrier-grade NAT
        ("2002:7f00:1::", "loopback"),  # 6to4 wrapping 127.0.0.1
        ("64:ff9b::a00:1", "private"),  # NAT64 wrapping 10.0.0.1
    ],
)
def test_it_rejects_non_public_addresses(address, reason):
    with pytest.raises(WebhookURLError, match=rf"a {reason} address"):
        validate_webhook_url("https://internal.example/hook", resolver=_resolver(address))


def test_it_rejects_when_any_resolved_address_is_private():
    resolver = _resolver("93.184.215.14", "10.1.2.3")
    with pytest.raises(WebhookURLError, match="10.1.2.3, a private address"):
        validate_webhook_url("https://mixed.example/", resolver=resolver)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://169.254.169.254/latest",
    ],
)
def test_it_checks_ip_literals_without_resolving(url):
    calls: list = []
    with pytest.raises(WebhookURLError):
        validate_webhook_url(url, resolver=_resolver("93.184.215.14", calls=calls))
    assert calls == []


def test_it_allows_private_addresses_when_asked():
    calls: list = []
    validate_webhook_url("http://192.168.1.10/hook", allow_private=True)
    validate_webhook_url(
        "http://ntfy.lan/hook", allow_private=True, resolver=_resolver("10.0.0.2", calls=calls)
    )
    assert calls == []  # no lookup needed: every address is acceptable


def test_it_still_checks_the_scheme_when_private_is_allowed():
    with pytest.raises(WebhookURLError):
        validate_webhook_url("file:///etc/passwd", allow_private=True)


def test_it_reports_a_host_that_does_not_resolve():
    with pytest.raises(WebhookURLError, match="Could not resolve the webhook host 'nope.invalid'"):
        validate_webhook_url("https://nope.invalid/", resolver=_failing_resolver)


def test_it_reports_a_host_that_resolves_to_nothing():
    with pytest.raises(WebhookURLError, match="did not resolve"):
        validate_webhook_url("https://empty.example/", resolver=_resolver())


def test_it_is_a_value_error():
    assert issubclass(WebhookURLError, ValueError)


def test_it_builds_a_slack_payload():
    payload = slack_payload("Budget alert", "Spend is $120.00 of $100.00 for <Team & Co>")
    assert payload == {
        "text": "Budget alert: Spend is $120.00 of $100.00 for &lt;Team &amp; Co&gt;",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": "Budget alert"}},
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": "Spend is $120.00 of $100.00 for &lt;Team &amp; Co&gt;",
                },
            },
        ],
    }
    json.dumps(payload)


def test_it_keeps_slack_text_within_block_limits():
    payload = slack_payload("T" * 200, "&" * 1000)
    header = payload["blocks"][0]["text"]["text"]
    section = payload["blocks"][1]["text"]["text"]
    assert len(header) == 150
    assert len(section) <= 3000
    # Cut between escape sequences, never inside one: 599 whole "&amp;" then the ellipsis.
    assert section == "&amp;" * 599 + "…"


def test_it_omits_an_empty_slack_section():
    payload = slack_payload("Sync failed", "")
    assert [b["type"] for b in payload["blocks"]] == ["header"]
    assert payload["text"] == "Sync failed"


def test_it_builds_a_generic_payload_with_money_as_strings():
    alert_id = uuid.UUID("12345678-1234-5678-1234-567812345678")
    payload = generic_payload(
        {
            "id": alert_id,
            "kind": "budget",
            "spend": Decimal("120.5000000000"),
            "budget": Decimal("1E+2"),
            "day": date(2025, 6, 15),
            "created_at": datetime(2025, 6, 15, 9, 30, tzinfo=UTC),
            "models": ("gpt-4o", "gpt-4o-mini"),
            "count": 3,
            "muted": False,
            "note": None,
        }
    )
    assert payload == {
        "source": "ai-cost-tracker",
        "version": 1,
        "alert": {
            "id": "12345678-1234-5678-1234-567812345678",
            "kind": "budget",
            "spend": "120.5000000000",
            "budget": "100",
            "day": "2025-06-15",
            "created_at": "2025-06-15T09:30:00+00:00",
            "models": ["gpt-4o", "gpt-4o-mini"],
            "count": 3,
            "muted": False,
            "note": None,
        },
    }
    json.dumps(payload)


def test_it_serialises_an_anomaly_in_a_generic_payload():
    anomaly = Anomaly(
        kind="spike",
        day=date(2025, 6, 15),
        key="total",
        observed=Decimal("5.00"),
        baseline=Decimal("1.00"),
        threshold=Decimal("1.30"),
        message="Spend spiked.",
    )
    alert = generic_payload({"anomaly": anomaly})["alert"]
    assert alert["anomaly"]["observed"] == "5.00"
    assert alert["anomaly"]["day"] == "2025-06-15"


def test_it_refuses_unknown_types_in_a_generic_payload():
    with pytest.raises(TypeError, match="object"):
        generic_payload({"thing": object()})
