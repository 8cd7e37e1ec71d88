"""Each provider's rate-limit headers, read by its adapter (no database, no network)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from providers.ratelimits.readings import (
    RateLimitReading,
    Window,
    parse_count,
    parse_duration,
    parse_retry_after,
    parse_timestamp,
)
from providers.registry import ADAPTERS, get_adapter_class

NOW = datetime(2026, 8, 21, 12, 0, tzinfo=UTC)
FIXTURES = Path(__file__).parent / "fixtures"


def headers(kind: str, name: str = "ratelimit_headers") -> dict[str, str]:
    return json.loads((FIXTURES / kind / f"{name}.json").read_text())


def read(kind: str, given: dict[str, str]) -> RateLimitReading | None:
    return get_adapter_class(kind).rate_limit_reading(given, now=NOW)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1s", 1),
        ("6m0s", 360),
        ("20ms", 0.02),
        ("2m59.56s", 179.56),
        ("7.66s", 7.66),
        ("1h2m3s", 3723),
        ("0s", 0),
    ],
)
def test_it_reads_go_durations(text, seconds):
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    "text",
    ["", "6", "s", "1x", "-1s", "1s2", "1.2.3s", "abc", "1s 2s", "9999999h", "١s", None],
)
def test_it_reads_a_malformed_duration_as_absent(text):
    assert parse_duration(text) is None


@pytest.mark.parametrize(
    ("text", "expected"), [("0", 0), ("6000", 6000), (" 42 ", 42), ("-1", None), ("1.5", None)]
)
def test_it_reads_counts_and_refuses_the_rest(text, expected):
    assert parse_count(text) == expected


def test_it_refuses_non_ascii_and_huge_counts():
    assert parse_count("١٢") is None  # Arabic-Indic digits pass str.isdigit()
    assert parse_count("1" * 30) is None


def test_it_reads_rfc3339_timestamps_in_utc():
    assert parse_timestamp("2026-08-21T10:15:30Z") == datetime(2026, 8, 21, 10, 15, 30, tzinfo=UTC)
    assert parse_timestamp("2026-08-21T12:15:30+02:00") == datetime(
        2026, 8, 21, 10, 15, 30, tzinfo=UTC
    )
    assert parse_timestamp("2026-08-21T10:15:30") is None  # no offset: a guess
    assert parse_timestamp("tomorrow") is None


def test_it_reads_retry_after_as_seconds_or_an_http_date():
    assert parse_retry_after("30", now=NOW) == NOW + timedelta(seconds=30)
    assert parse_retry_after("Fri, 21 Aug 2026 12:01:00 GMT", now=NOW) == NOW + timedelta(minutes=1)
    assert parse_retry_after("soon", now=NOW) is None
    assert parse_retry_after("-5", now=NOW) is None


def test_it_reads_openais_headers():
    reading = read("openai", headers("openai"))

    assert reading.requests == Window(500, 499, NOW + timedelta(milliseconds=120))
    assert reading.tokens == Window(200000, 150000, NOW + timedelta(minutes=6))
    assert reading.input_tokens is None and reading.output_tokens is None
    assert reading.retry_at is None


def test_it_reads_header_names_in_any_case():
    given = {name.upper(): value for name, value in headers("openai").items()}

    assert read("openai", given) == read("openai", headers("openai"))


def test_it_reads_groqs_headers_and_a_429s_retry_after():
    reading = read("groq", headers("groq"))
    assert reading.requests == Window(14400, 14399, NOW + timedelta(seconds=179.56))
    assert reading.tokens == Window(6000, 500, NOW + timedelta(seconds=7.66))

    limited = read("groq", headers("groq", "ratelimit_429_headers"))
    assert limited.tokens.remaining == 0
    assert limited.retry_at == NOW + timedelta(seconds=2)


def test_it_reads_anthropics_four_dimensions():
    reading = read("anthropic", headers("anthropic"))

    assert reading.requests == Window(50, 49, datetime(2026, 8, 21, 12, 1, 0, tzinfo=UTC))
    assert reading.tokens == Window(90000, 80000, datetime(2026, 8, 21, 12, 1, 6, tzinfo=UTC))
    assert reading.input_tokens == Window(50000, 40000, datetime(2026, 8, 21, 12, 1, 7, tzinfo=UTC))
    assert reading.output_tokens == Window(10000, 9770, datetime(2026, 8, 21, 12, 1, 2, tzinfo=UTC))
    limited = read("anthropic", headers("anthropic", "ratelimit_429_headers"))
    assert limited.requests.remaining == 0
    assert limited.retry_at == NOW + timedelta(seconds=30)
    assert limited.tokens is None


def test_it_ignores_malformed_values_and_keeps_the_good_ones():
    given = {
        "x-ratelimit-limit-requests": "lots",
        "x-ratelimit-remaining-requests": "12",
        "x-ratelimit-reset-requests": "in a bit",
        "x-ratelimit-limit-tokens": "",
        "x-ratelimit-remaining-tokens": "1e9",
        "x-ratelimit-reset-tokens": "1.5.5s",
        "retry-after": "later",
    }

    reading = read("openai", given)

    assert reading.requests == Window(None, 12, None)
    assert reading.tokens is None
    assert reading.retry_at is None


def test_it_ignores_malformed_anthropic_values():
    given = {
        "anthropic-ratelimit-requests-limit": "50",
        "anthropic-ratelimit-requests-remaining": "forty",
        "anthropic-ratelimit-requests-reset": "in 10s",  # a duration, not RFC 3339
        "anthropic-ratelimit-tokens-reset": "2026-13-45T99:00:00Z",
    }

    reading = read("anthropic", given)

    assert reading.requests == Window(50, None, None)
    assert reading.tokens is None


def test_it_reads_nothing_from_a_response_without_rate_limit_headers():
    for kind in ADAPTERS:
        assert read(kind, {"content-type": "application/json"}) is None, kind


def test_a_provider_without_limit_headers_still_reads_a_429s_retry_after():
    # Gemini sends no limit headers (its retry delay is in the body); retry-after is HTTP's.
    reading = read("gemini", {"Retry-After": "12", "x-ratelimit-remaining-requests": "3"})

    assert reading == RateLimitReading(retry_at=NOW + timedelta(seconds=12))


@pytest.mark.parametrize("kind", list(ADAPTERS))
def test_it_never_raises_on_garbage(kind):
    garbage = {
        "retry-after": "\x00",
        "x-ratelimit-reset-requests": "9" * 500 + "s",
        "anthropic-ratelimit-requests-reset": "9" * 500,
        "anthropic-ratelimit-tokens-limit": "９",  # a full-width digit
    }

    read(kind, garbage)  # no exception
    assert read(kind, object()) is None  # not even a mapping


def test_a_reading_missing_dimensions_keeps_the_older_ones():
    older = read("groq", headers("groq"))
    only_retry = RateLimitReading(retry_at=NOW + timedelta(seconds=5))

    merged = only_retry.merged_over(older)

    assert merged.tokens == older.tokens and merged.requests == older.requests
    assert merged.retry_at == NOW + timedelta(seconds=5)
