"""The one place an error stored for a person (a sync run, an account's last sync, a connection
test) is turned into what a page shows: a one-line human summary, the details on demand.

The stored text is whatever the sync or the connection test recorded — often a `requests`
exception (``HTTPSConnectionPool(host=…) Max retries exceeded … NameResolutionError(…)``) — and
sometimes an error class (``network``, ``timeout``, ``auth``, …, or an exception name in older
rows). Nothing here trusts either to have a given shape: an unknown message still gets a short
first line, never a wall of text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from django import template

from providers.http import network_cause

register = template.Library()

SUMMARY_CHARS = 160

_NETWORK_ANY = re.compile(
    r"HTTPS?ConnectionPool|Max retries exceeded|NewConnectionError|ConnectionError|"
    r"provider unreachable",
    re.I,
)
_READ_TIMEOUT = re.compile(r"Read timed out|read timeout|timed out", re.I)
_HOST_IN_POOL = re.compile(r"host=['\"]([^'\"]+)['\"]")
_URL = re.compile(r"https?://[^\s'\"<>()]+", re.I)
_UNSUPPORTED = re.compile(r"\bnot supported\b|NotImplementedError", re.I)
_STATUS = re.compile(r"\((\d{3})\)")

_CLASS_ALIASES = {
    # Exception names older rows stored as the error class.
    "connectionerror": "network",
    "nameresolutionerror": "network",
    "connecttimeout": "timeout",
    "readtimeout": "timeout",
    "timeout": "timeout",
    "notimplementederror": "unsupported",
}


_HUMAN_NETWORK_LINE = re.compile(r"^Couldn't reach ([^\s:]+)")


@dataclass(frozen=True)
class ErrorDisplay:
    summary: str  # one line, for a person
    detail: str  # the full stored text, shown on demand ("" when the summary says it all)
    tone: str  # "error", or "neutral" for "this provider can't do that"


def _host(message: str) -> str:
    # providers/http.py already writes "Couldn't reach <host>: <reason>" as the first line.
    match = _HUMAN_NETWORK_LINE.search(message) or _HOST_IN_POOL.search(message)
    if match:
        return match.group(1)
    match = _URL.search(message)
    if match:
        return urlsplit(match.group(0)).hostname or ""
    return ""


def _first_line(message: str) -> str:
    line = next((part.strip() for part in message.splitlines() if part.strip()), "")
    # A requests exception's repr adds nothing a person can use after its first clause.
    for marker in (" (Caused by ", ": HTTPSConnectionPool(", ": HTTPConnectionPool("):
        if marker in line:
            line = line.split(marker, 1)[0]
    if len(line) > SUMMARY_CHARS:
        line = line[: SUMMARY_CHARS - 1].rstrip() + "…"
    return line[:1].upper() + line[1:]


def _normalised_class(error_class: str) -> str:
    key = (error_class or "").strip().lower().replace("-", "_")
    return _CLASS_ALIASES.get(key, key)


def error_describe(message: object, error_class: object = "") -> ErrorDisplay:
    """A one-line human summary of a stored error message, plus the full text on demand."""
    text = str(message or "").strip()
    kind = _normalised_class(str(error_class or ""))
    if not text and not kind:
        return ErrorDisplay("", "", "error")
    if kind == "unsupported" or (_UNSUPPORTED.search(text) and not _STATUS.search(text)):
        return ErrorDisplay("Not available for this provider", text, "neutral")

    host = _host(text)
    where = host or "the provider"
    summary = ""
    cause = network_cause(text)
    if cause:
        summary = f"Couldn't reach {where}: {cause}"
    elif kind == "timeout" or (_READ_TIMEOUT.search(text) and not kind):
        summary = f"{where[:1].upper()}{where[1:]} did not answer in time (timed out)"
    elif kind == "network" or _NETWORK_ANY.search(text):
        summary = f"Couldn't reach {where}"
    elif kind == "rate_limited":
        summary = _first_line(text) or "The provider is rate limiting requests; will retry later"
    else:
        summary = _first_line(text)
        if not summary:
            summary = {
                "auth": "The provider rejected the key",
                "server_error": "The provider had an internal error",
                "malformed": "The provider sent a response that could not be read",
            }.get(kind, "Failed")
    detail = text if text and text != summary else ""
    return ErrorDisplay(summary, detail, "error")


@register.filter
def error_summary(message, error_class="") -> str:
    """`{{ account.last_sync_error|error_summary }}`: the one-line summary only."""
    return error_describe(message, error_class).summary


@register.inclusion_tag("_error_message.html")
def error_message(message, error_class="") -> dict:
    """`{% error_message run.error_message run.error_class %}`: summary + details on demand."""
    return {"error": error_describe(message, error_class)}
