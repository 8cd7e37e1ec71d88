"""One response's rate-limit headers, read into a small frozen dataclass.

Each adapter knows its provider's header names (``ProviderAdapter.rate_limit_reading``); the
helpers here parse the value formats they share. Nothing here raises on a provider's value: a
malformed one is read as absent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

DIMENSIONS = ("requests", "tokens", "input_tokens", "output_tokens")
# A bucket bigger than this is not a rate limit but garbage (and would not fit a BigInteger).
_MAX_COUNT = 10**15
_MAX_WAIT = timedelta(days=31)


@dataclass(frozen=True)
class Window:
    """One dimension's bucket: its size, what is left, and when it is full again (UTC)."""

    limit: int | None = None
    remaining: int | None = None
    reset_at: datetime | None = None

    @property
    def empty(self) -> bool:
        return self.limit is None and self.remaining is None and self.reset_at is None


@dataclass(frozen=True)
class RateLimitReading:
    """What one response said; None for a dimension whose headers were absent or unreadable.

    ``retry_at`` is when a 429's ``retry-after`` says to try again.
    """

    requests: Window | None = None
    tokens: Window | None = None
    input_tokens: Window | None = None
    output_tokens: Window | None = None
    retry_at: datetime | None = None

    @property
    def empty(self) -> bool:
        return self.retry_at is None and all(getattr(self, d) is None for d in DIMENSIONS)

    def merged_over(self, older: RateLimitReading | None) -> RateLimitReading:
        """This reading, with the dimensions it lacks taken from an older one (a 429 carrying
        only retry-after must not wipe the headroom the previous answer told)."""
        if older is None:
            return self
        values = {d: getattr(self, d) or getattr(older, d) for d in DIMENSIONS}
        return RateLimitReading(**values, retry_at=self.retry_at or older.retry_at)


def lowered(headers: Mapping[str, str]) -> dict[str, str]:
    """Header names in lower case (a plain dict's lookups are case-sensitive)."""
    try:
        return {str(k).lower(): str(v) for k, v in headers.items()}
    except Exception:
        return {}


def parse_count(value: str | None) -> int | None:
    """A non-negative integer ("6000", "5999"); anything else is None."""
    if value is None:
        return None
    value = value.strip()
    if not value.isascii() or not value.isdigit():
        return None
    count = int(value)
    return count if count <= _MAX_COUNT else None


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)", re.ASCII)
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def parse_duration(value: str | None) -> timedelta | None:
    """A Go-style duration ("6m0s", "1s", "20ms", "2m59.56s", "1h2m3s"); else None."""
    if not value:
        return None
    text = value.strip()
    if not text or len(text) > 40:
        return None
    seconds, pos = 0.0, 0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            return None
        seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos != len(text):
        return None
    wait = timedelta(seconds=seconds)
    return wait if wait <= _MAX_WAIT else None


def parse_timestamp(value: str | None) -> datetime | None:
    """An RFC 3339 timestamp ("2026-08-21T10:15:30Z"), returned in UTC; else None."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("z", "Z"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None  # RFC 3339 always has an offset; a naive one would be a guess
    return moment.astimezone(UTC)


def parse_retry_after(value: str | None, *, now: datetime) -> datetime | None:
    """Retry-After (RFC 9110): delay-seconds or an HTTP date; when to try again, or None."""
    if not value:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        wait = timedelta(seconds=int(text))
        return now + wait if wait <= _MAX_WAIT else None
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment is None or moment.tzinfo is None:
        return None
    return moment.astimezone(UTC)


def window(limit: str | None, remaining: str | None, reset_at: datetime | None) -> Window | None:
    """A Window from raw limit/remaining values and a parsed reset time; None when all absent."""
    found = Window(parse_count(limit), parse_count(remaining), reset_at)
    return None if found.empty else found


def retry_at(headers: Mapping[str, str], *, now: datetime) -> datetime | None:
    """The standard ``retry-after`` header, read from lower-cased ``headers``."""
    return parse_retry_after(headers.get("retry-after"), now=now)


def openai_style_reading(headers: Mapping[str, str], *, now: datetime) -> RateLimitReading:
    """The ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}`` headers OpenAI made the
    de-facto format of OpenAI-compatible APIs (Groq and others send the same six), resets as
    Go-style durations from ``now``. Adapters whose provider sends them call this."""
    h = lowered(headers)

    def dimension(name: str) -> Window | None:
        wait = parse_duration(h.get(f"x-ratelimit-reset-{name}"))
        return window(
            h.get(f"x-ratelimit-limit-{name}"),
            h.get(f"x-ratelimit-remaining-{name}"),
            now + wait if wait is not None else None,
        )

    return RateLimitReading(
        requests=dimension("requests"), tokens=dimension("tokens"), retry_at=retry_at(h, now=now)
    )
