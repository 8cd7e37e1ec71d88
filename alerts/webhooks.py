"""Webhook URL validation (SSRF guard) and notification payloads. No network I/O here.

``validate_webhook_url`` checks where a URL points *at the time of the call*. DNS can change
between validation and delivery (rebinding), so the sender should validate again right before
each delivery; a complete defence would also connect to the exact address that was checked.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import ipaddress
import math
import socket
import uuid
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[..., list[tuple[Any, ...]]]

DEFAULT_PORTS = {"http": 80, "https": 443}
# RFC 6052 well-known NAT64 prefix: the last 32 bits are the IPv4 address actually reached.
NAT64_PREFIX = ipaddress.IPv6Network("64:ff9b::/96")
# Block Kit limits: header text 150 characters, section text 3000, a field's text 2000.
SLACK_HEADER_MAX = 150
SLACK_TEXT_MAX = 3000
SLACK_FIELDS_MAX = 10
# Discord embed limits (Message resource, "Embed Limits"): title 256, description 4096, field
# name 256 and value 1024, 25 fields, 6000 characters across the embed (256 + 4096 + our few
# short fields stay under it). A message's `content` may hold 2000; we send only the embed.
DISCORD_TITLE_MAX = 256
DISCORD_DESCRIPTION_MAX = 4096
DISCORD_FIELD_NAME_MAX = 256
DISCORD_FIELD_VALUE_MAX = 1024
DISCORD_FIELDS_MAX = 25
DISCORD_COLOR = 0xE67E22  # orange: an alert, not an outage
# A Teams incoming-webhook message may be at most 28 KB. We send JSON with non-ASCII escaped,
# up to 12 bytes a character (a surrogate pair "\ud83d\udcb8"), so 2000 characters of text
# and 200 of title stay well under it.
TEAMS_TITLE_MAX = 200
TEAMS_TEXT_MAX = 2000
PAYLOAD_VERSION = 1


class WebhookURLError(ValueError):
    """The URL is malformed or points somewhere a server-side request must not go."""


def _embedded_ipv4(addr: IPAddress) -> tuple[ipaddress.IPv4Address | None, bool]:
    """The IPv4 address an IPv6 address really reaches, and whether that alone decides.

    IPv4-mapped (``::ffff:a.b.c.d``) and NAT64 addresses are just ways to reach the IPv4 host,
    so only that host matters. A 6to4 address is judged on both halves.
    """
    if not isinstance(addr, ipaddress.IPv6Address):
        return None, False
    if addr.ipv4_mapped is not None:
        return addr.ipv4_mapped, True
    if addr in NAT64_PREFIX:
        return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF), True
    return addr.sixtofour, False


def _blocked_reason(addr: IPAddress) -> str | None:
    """Why the address must not receive webhooks, or None if it is publicly routable."""
    embedded, decisive = _embedded_ipv4(addr)
    if embedded is not None:
        reason = _blocked_reason(embedded)
        if reason or decisive:
            return reason
    # Order matters only for the message: the ipaddress module also calls 0.0.0.0 and 240/4
    # "private".
    checks = (
        ("unspecified", addr.is_unspecified),
        ("loopback", addr.is_loopback),
        ("link-local", addr.is_link_local),  # includes the 169.254.169.254 metadata service
        ("multicast", addr.is_multicast),
        ("reserved", addr.is_reserved),
        ("private", addr.is_private),
        ("site-local", isinstance(addr, ipaddress.IPv6Address) and addr.is_site_local),
        # Catches shared address space (100.64.0.0/10) and other special-purpose blocks.
        ("non-public", not addr.is_global),
    )
    return next((name for name, hit in checks if hit), None)


def _parse_ip(host: str) -> IPAddress | None:
    try:
        # Drop an IPv6 zone id ("fe80::1%eth0"); the zone does not change what the address is.
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None


def validate_webhook_url(
    url: str,
    *,
    allow_private: bool = False,
    resolver: Resolver = socket.getaddrinfo,
) -> None:
    """Raise ``WebhookURLError`` unless ``url`` is an http(s) URL whose host is public.

    Every address the host resolves to is checked (an attacker controlling DNS can mix a public
    address with a private one). ``allow_private`` is for self-hosters delivering to their own
    network; it keeps the scheme and host checks but skips resolution. ``resolver`` has the
    signature of ``socket.getaddrinfo`` and is injected by tests.
    """
    if not isinstance(url, str) or not url.strip():
        raise WebhookURLError("Enter a webhook URL.")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise WebhookURLError("The webhook URL must not contain spaces or control characters.")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        got = f"{scheme}://" if scheme else "no scheme"
        raise WebhookURLError(f"The webhook URL must start with http:// or https:// (got {got}).")
    try:
        host = parts.hostname
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError as exc:  # urlsplit raises on a non-numeric or out-of-range port
        raise WebhookURLError(f"The webhook URL has an invalid port: {exc}.") from exc
    if not host:
        raise WebhookURLError("The webhook URL must include a host name.")
    if allow_private:
        return

    literal = _parse_ip(host)
    if literal is not None:
        addresses = [literal]
    else:
        try:
            infos = resolver(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:  # socket.gaierror is an OSError
            raise WebhookURLError(f"Could not resolve the webhook host {host!r}: {exc}.") from exc
        addresses = [a for a in (_parse_ip(str(info[4][0])) for info in infos) if a is not None]
        if not addresses:
            raise WebhookURLError(f"The webhook host {host!r} did not resolve to any address.")

    for addr in addresses:
        reason = _blocked_reason(addr)
        if reason:
            raise WebhookURLError(
                f"The webhook host {host!r} points to {addr}, a {reason} address; webhooks "
                "can only be sent to public internet addresses."
            )


def _slack_escape(text: str, limit: int) -> str:
    """Escape Slack's control characters, then cut to ``limit`` characters without splitting
    an escape sequence."""
    escapes = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
    pieces = [escapes.get(ch, ch) for ch in text]
    if sum(len(p) for p in pieces) <= limit:
        return "".join(pieces)
    kept: list[str] = []
    length = 0
    for piece in pieces:
        if length + len(piece) > limit - 1:  # keep room for the ellipsis
            break
        kept.append(piece)
        length += len(piece)
    return "".join(kept) + "…"


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclasses.dataclass(frozen=True)
class Notice:
    """What every webhook format says about one alert.

    ``facts`` are short label/value pairs (the money figures, formatted): builders cut the
    free text to the platform's limits, never a fact. ``payload`` is the generic JSON body's
    ``alert`` object.
    """

    title: str
    text: str
    url: str = ""
    facts: tuple[tuple[str, str], ...] = ()
    payload: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def slack_payload(
    title: str, text: str, *, url: str = "", facts: tuple[tuple[str, str], ...] = ()
) -> dict[str, Any]:
    """A Slack incoming-webhook body: a header block, a section block and a plain fallback.

    Slack treats ``&``, ``<`` and ``>`` as markup, so user-provided names are escaped; the
    header is plain text and is only cut to Slack's length limit. ``url`` (the alert's page
    in the app) becomes a link under the text.
    """
    title = title.strip() or "AI Cost Tracker alert"
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": _truncate(title, SLACK_HEADER_MAX)},
        }
    ]
    if text.strip():  # Slack rejects an empty section
        blocks.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": _slack_escape(text, SLACK_TEXT_MAX)},
            }
        )
    if facts:
        fields = [
            {
                "type": "mrkdwn",
                "text": f"*{_slack_escape(label, 100)}*\n{_slack_escape(value, 100)}",
            }
            for label, value in facts[:SLACK_FIELDS_MAX]
        ]
        blocks.append({"type": "section", "fields": fields})
    if url:
        # Inside <url|label> only &, < and > need escaping; our URLs have none but & maybe.
        link = f"<{url.replace('&', '&amp;')}|Open in AI Cost Tracker>"
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": link}]})
    fallback = f"{title}: {text}" if text.strip() else title
    if url:
        fallback = f"{fallback} {url}"
    return {"text": _slack_escape(fallback, SLACK_TEXT_MAX), "blocks": blocks}


def _jsonable(value: Any) -> Any:
    """Convert to JSON types; money (``Decimal``) becomes a string so no precision is lost."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, Decimal):
        return format(value, "f")  # never "1E+2"
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, enum.Enum):
        return _jsonable(value.value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return sorted((_jsonable(v) for v in value), key=str)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    raise TypeError(f"Cannot put {type(value).__name__} in a webhook payload")


def generic_payload(alert: Mapping[str, Any]) -> dict[str, Any]:
    """The body of a generic JSON webhook: ``{"source", "version", "alert": {...}}``.

    Decimals become strings ("12.5000000000"), dates and datetimes ISO 8601, UUIDs strings,
    enums their value; anything else unexpected raises ``TypeError`` rather than being sent as
    a Python repr.
    """
    return {"source": "ai-cost-tracker", "version": PAYLOAD_VERSION, "alert": _jsonable(alert)}


def teams_payload(notice: Notice) -> dict[str, Any]:
    """A Microsoft Teams incoming-webhook message: one Adaptive Card (schema 1.2) in the
    ``message`` envelope, the facts as a FactSet and the alert's page as an OpenUrl action.

    Reference: Teams "Create Incoming Webhooks" / "Send Adaptive Cards using an Incoming
    Webhook" (message envelope, contentType application/vnd.microsoft.card.adaptive, 28 KB).
    """
    title = notice.title.strip() or "AI Cost Tracker alert"
    body: list[dict[str, Any]] = [
        {
            "type": "TextBlock",
            "text": _truncate(title, TEAMS_TITLE_MAX),
            "weight": "Bolder",
            "size": "Medium",
            "wrap": True,
        }
    ]
    if notice.text.strip():
        body.append(
            {"type": "TextBlock", "text": _truncate(notice.text, TEAMS_TEXT_MAX), "wrap": True}
        )
    if notice.facts:
        body.append(
            {
                "type": "FactSet",
                "facts": [{"title": label, "value": value} for label, value in notice.facts],
            }
        )
    card: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.2",
        "body": body,
    }
    if notice.url:
        card["actions"] = [
            {"type": "Action.OpenUrl", "title": "Open in AI Cost Tracker", "url": notice.url}
        ]
    return {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": None,
                "content": card,
            }
        ],
    }


def discord_payload(notice: Notice) -> dict[str, Any]:
    """A Discord execute-webhook body: one embed (title linking to the alert, the text as its
    description, the facts as inline fields) that mentions no one.

    Reference: Discord "Execute Webhook" (content and/or embeds, allowed_mentions) and
    "Embed Limits".
    """
    title = notice.title.strip() or "AI Cost Tracker alert"
    embed: dict[str, Any] = {"title": _truncate(title, DISCORD_TITLE_MAX), "color": DISCORD_COLOR}
    if notice.url:
        embed["url"] = notice.url
    if notice.text.strip():
        embed["description"] = _truncate(notice.text, DISCORD_DESCRIPTION_MAX)
    if notice.facts:
        embed["fields"] = [
            {
                "name": _truncate(label, DISCORD_FIELD_NAME_MAX),
                "value": _truncate(value, DISCORD_FIELD_VALUE_MAX),
                "inline": True,
            }
            for label, value in notice.facts[:DISCORD_FIELDS_MAX]
        ]
    # An alert's text quotes account and model names: never let "@everyone" in one ping.
    return {"embeds": [embed], "allowed_mentions": {"parse": []}}


def _generic(notice: Notice) -> dict[str, Any]:
    return generic_payload(notice.payload)


def _slack(notice: Notice) -> dict[str, Any]:
    return slack_payload(notice.title, notice.text, url=notice.url, facts=notice.facts)


# One entry per webhook format: (label, body builder). Model choices derive from it; nothing
# else switches on a format.
FORMATS: dict[str, tuple[str, Callable[[Notice], dict[str, Any]]]] = {
    "generic": ("Generic JSON", _generic),
    "slack": ("Slack", _slack),
    "teams": ("Microsoft Teams", teams_payload),
    "discord": ("Discord", discord_payload),
}
FORMAT_CHOICES = [(key, label) for key, (label, _) in FORMATS.items()]


def webhook_body(format: str, notice: Notice) -> dict[str, Any]:  # noqa: A002
    """The JSON body a webhook of ``format`` receives for ``notice``."""
    return FORMATS[format][1](notice)
