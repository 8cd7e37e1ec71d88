"""The one HTTP wrapper every provider adapter goes through.

It always passes a timeout (bounded by what is left of the caller's time budget), parses JSON
with ``parse_float=Decimal`` (money is never a float), retries what is worth retrying (429,
5xx, timeouts, connection errors) with bounded tries, and turns every failure into one error
type, :class:`ProviderError`, whose ``error_class`` says what went wrong and whose ``permanent``
flag tells the caller whether trying again later can help.

Every ProviderError is redacted as it is built (:mod:`providers.redaction`): the secrets of the
adapter call in progress and anything token-shaped never reach its message or excerpt, so
nothing downstream (the retry log line, a SyncRun, an API answer, a page) can leak them.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import requests
from django.db import models

from providers.redaction import redact, redacted_logger

logger = redacted_logger(__name__)

# Module constants rather than literals so tests can shorten the read timeout.
CONNECT_TIMEOUT: float = 5
READ_TIMEOUT: float = 30
MAX_RETRY_AFTER: int = 60  # never wait longer than this on a provider's say-so (in place)
BACKOFF_BASE: float = 1.0
MAX_PAGES: int = 1000
EXCERPT_CHARS: int = 500

Sleep = Callable[[float], Any]


class ErrorClass(models.TextChoices):
    """What kind of failure a provider call (or a sync) ended in; stored on SyncRun."""

    AUTH = "auth", "Key rejected"
    RATE_LIMITED = "rate_limited", "Rate limited"
    TIMEOUT = "timeout", "Timed out"
    SERVER_ERROR = "server_error", "Provider error"
    MALFORMED = "malformed", "Malformed response"
    NETWORK = "network", "Network"
    CONFIG = "config", "Account settings"
    INTERNAL = "internal", "Internal error"
    STALE = "stale", "Worker lost"


class ProviderError(Exception):
    """A provider call failed.

    ``message`` is one short human line ("Couldn't reach api.openai.com: DNS lookup failed");
    ``detail`` the technical text behind it; ``body_excerpt`` the start of the provider's body.
    All three are redacted here, the one place every provider failure is made.

    ``permanent`` is True when retrying cannot help without a person changing something (a
    rejected key, a missing permission, a wrong organization); False for outages, rate limits and
    garbled responses. ``retry_after`` is the provider's Retry-After in seconds, if it sent one.
    """

    def __init__(
        self,
        message: str,
        *,
        permanent: bool = False,
        status: int | None = None,
        body_excerpt: str = "",
        error_class: str | None = None,
        detail: str = "",
        retry_after: int | None = None,
    ) -> None:
        self.message = redact(message)
        super().__init__(self.message)
        self.permanent = permanent
        self.status = status
        # Redact before cutting, so a key straddling the cut cannot survive as a prefix.
        self.body_excerpt = excerpt(redact(body_excerpt))
        self.detail = excerpt(redact(detail))
        if error_class is None:
            error_class = ErrorClass.CONFIG if permanent else ErrorClass.MALFORMED
        self.error_class = ErrorClass(error_class)
        self.retry_after = retry_after

    def __str__(self) -> str:
        return self.message


@dataclass
class Budget:
    """A caller's limits on one adapter call: a total deadline, a cap on tries, a heartbeat.

    ``deadline`` is a ``clock()`` reading; every request's timeout is bounded by what is left,
    and no request starts (nor retry waits) once it has passed. ``on_request`` runs before each
    request (the sync service renews its run's lease there). ``on_rate_limited`` runs for each
    rate-limited answer, retried or not (the sync service counts them).
    """

    seconds: float | None = None
    max_tries: int | None = None
    on_request: Callable[[], Any] | None = None
    on_rate_limited: Callable[[ProviderError], Any] | None = None
    clock: Callable[[], float] = time.monotonic
    deadline: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.seconds is not None:
            self.deadline = self.clock() + self.seconds

    def remaining(self) -> float | None:
        return None if self.deadline is None else self.deadline - self.clock()

    def used_up(self) -> ProviderError:
        return ProviderError(
            f"Gave up: the sync's time budget ({self.seconds:g} s) is used up",
            error_class=ErrorClass.TIMEOUT,
        )


@dataclass(frozen=True)
class JsonResponse:
    """A parsed JSON object plus the response headers (GitHub pages through ``Link``)."""

    body: dict[str, Any]
    headers: Mapping[str, str]
    status: int


def excerpt(text: str) -> str:
    return text[:EXCERPT_CHARS]


def provider_message(text: str) -> str:
    """Pull the human message out of an error body (OpenAI, Anthropic and GitHub shapes)."""
    try:
        body = json.loads(text)
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    error = body.get("error")
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return error["message"]
    if isinstance(error, str):
        return error
    if isinstance(body.get("message"), str):
        return body["message"]
    return ""


def _with_detail(message: str, text: str) -> str:
    detail = provider_message(text)
    return f"{message}: {detail[:200]}" if detail else message


def _host(url: str) -> str:
    return urlsplit(url).hostname or "the provider"


def _backoff(attempt: int) -> float:
    # Exponential (1, 2, 4, ... seconds) plus up to one base unit of jitter, so many accounts
    # syncing at once do not retry in lock-step.
    delay = BACKOFF_BASE * 2 ** (attempt - 1)
    return min(delay + random.uniform(0, BACKOFF_BASE), MAX_RETRY_AFTER)


def _retry_after_header(response: requests.Response) -> int | None:
    # Providers send integer seconds (OpenAI spec, Groq, GitHub). An HTTP date or junk falls
    # back to our own backoff rather than trusting it.
    value = response.headers.get("Retry-After", "").strip()
    return int(value) if value.isdigit() else None


def _is_rate_limited(response: requests.Response) -> bool:
    if response.status_code == 429:
        return True
    # GitHub answers an exhausted rate limit with 403 plus these headers, not 429.
    return response.status_code == 403 and (
        "Retry-After" in response.headers or response.headers.get("x-ratelimit-remaining") == "0"
    )


def _error_for_status(response: requests.Response) -> ProviderError:
    status = response.status_code
    text = response.text
    common = {"status": status, "body_excerpt": text, "detail": provider_message(text)}
    if _is_rate_limited(response):
        return ProviderError(
            f"rate limited ({status})",
            permanent=False,
            error_class=ErrorClass.RATE_LIMITED,
            retry_after=_retry_after_header(response),
            **common,
        )
    if status == 401:
        return ProviderError(
            "key rejected (401)", permanent=True, error_class=ErrorClass.AUTH, **common
        )
    if status == 403:
        message = _with_detail("key lacks admin permission (403)", text)
        return ProviderError(message, permanent=True, error_class=ErrorClass.AUTH, **common)
    if status == 404:
        return ProviderError(
            "not found (404)", permanent=True, error_class=ErrorClass.CONFIG, **common
        )
    if status >= 500:
        message = _with_detail(f"provider error ({status})", text)
        return ProviderError(
            message, permanent=False, error_class=ErrorClass.SERVER_ERROR, **common
        )
    # Other 4xx (400, 422): the request or the account is wrong; a retry cannot fix it.
    message = _with_detail(f"request rejected ({status})", text)
    return ProviderError(message, permanent=True, error_class=ErrorClass.CONFIG, **common)


# (pattern in the message, what went wrong) for failures to reach the provider at all.
NETWORK_CAUSES: list[tuple[re.Pattern[str], str]] = [
    (
        re.compile(
            r"NameResolutionError|Failed to resolve|Name or service not known|"
            r"nodename nor servname|getaddrinfo failed|Temporary failure in name resolution|"
            r"No address associated with hostname",
            re.I,
        ),
        "DNS lookup failed",
    ),
    (re.compile(r"Connection refused|ECONNREFUSED|Errno 111\]", re.I), "connection refused"),
    (
        re.compile(r"ConnectTimeout|connect timeout|Connection to .+ timed out", re.I),
        "connection timed out",
    ),
    (
        re.compile(r"SSLError|CERTIFICATE_VERIFY_FAILED|certificate verify failed|SSL:", re.I),
        "TLS/certificate error",
    ),
    (
        re.compile(r"Network is unreachable|No route to host|ENETUNREACH|EHOSTUNREACH", re.I),
        "network unreachable",
    ),
    (
        re.compile(
            r"RemoteDisconnected|Connection reset|Connection aborted|ConnectionResetError|"
            r"IncompleteRead|closed connection without response",
            re.I,
        ),
        "the connection was dropped",
    ),
    (re.compile(r"ProxyError|Unable to connect to proxy", re.I), "the HTTP proxy failed"),
]


def network_cause(text: str) -> str:
    """What went wrong, in a few words, for a failure to reach a host at all ("DNS lookup
    failed"), read from an exception's text; "" when the text names no known cause. The one
    wording the sync's errors and the pages' error display share."""
    return next((label for pattern, label in NETWORK_CAUSES if pattern.search(text)), "")


def _network_error(exc: requests.RequestException, url: str) -> ProviderError:
    """One human line for a request that got no HTTP answer; the raw text goes to ``detail``."""
    host = _host(url)
    if isinstance(exc, requests.ConnectTimeout):
        reason, error_class = "connection timed out", ErrorClass.TIMEOUT
    elif isinstance(exc, requests.Timeout) or "Read timed out" in str(exc):
        return ProviderError(
            f"Timed out waiting for {host} to answer",
            error_class=ErrorClass.TIMEOUT,
            detail=str(exc),
        )
    else:
        reason = network_cause(f"{type(exc).__name__}: {exc}") or "connection failed"
        error_class = ErrorClass.NETWORK
    return ProviderError(
        f"Couldn't reach {host}: {reason}", error_class=error_class, detail=str(exc)
    )


def _read_body(response: requests.Response, budget: Budget) -> None:
    """Read the body in chunks, giving up once the budget is spent: the read timeout bounds
    each read, not the whole body, so a provider trickling bytes could otherwise hold a worker
    for as long as it likes."""
    chunks: list[bytes] = []
    try:
        for chunk in response.iter_content(chunk_size=64 * 1024):
            chunks.append(chunk)
            remaining = budget.remaining()
            if remaining is not None and remaining <= 0:
                raise requests.Timeout(
                    f"the body was still arriving when the time budget ({budget.seconds:g} s) "
                    "ran out"
                )
    except requests.exceptions.ChunkedEncodingError as exc:
        raise requests.ConnectionError(f"Connection aborted: {exc}") from exc
    finally:
        response.close()
    response._content = b"".join(chunks)  # what .text and .json() read from then on


def _parse(response: requests.Response) -> JsonResponse:
    text = response.text
    try:
        body = json.loads(text, parse_float=Decimal)
    except ValueError as exc:
        raise ProviderError(
            f"malformed response: not JSON ({exc})",
            status=response.status_code,
            body_excerpt=text,
            error_class=ErrorClass.MALFORMED,
        ) from None
    if not isinstance(body, dict):
        raise ProviderError(
            "malformed response: expected a JSON object",
            status=response.status_code,
            body_excerpt=text,
            error_class=ErrorClass.MALFORMED,
        )
    return JsonResponse(body=body, headers=response.headers, status=response.status_code)


def get_response(
    session: requests.Session,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    params: Mapping[str, Any] | None = None,
    max_tries: int = 4,
    sleep: Sleep = time.sleep,
    budget: Budget | None = None,
) -> JsonResponse:
    """GET ``url`` and return its JSON object body and headers, retrying temporary failures.

    List values in ``params`` are sent as repeated keys, so ``{"group_by[]": ["model"]}``
    becomes ``group_by[]=model`` (the bracket form OpenAI and Anthropic document).

    With a ``budget``: at most ``budget.max_tries`` tries, each request's timeouts bounded by
    the time left, and no request or wait past the deadline.
    """
    budget = budget or Budget()
    if budget.max_tries is not None:
        max_tries = max(1, min(max_tries, budget.max_tries))
    last_error: ProviderError | None = None
    for attempt in range(1, max_tries + 1):
        remaining = budget.remaining()
        if remaining is not None and remaining <= 0:
            raise last_error or budget.used_up()
        if budget.on_request is not None:
            budget.on_request()
        connect, read = CONNECT_TIMEOUT, READ_TIMEOUT
        if remaining is not None:
            connect, read = min(connect, remaining), min(read, remaining)
        delay: float | None = None
        try:
            response = session.get(
                url,
                headers=dict(headers or {}),
                params=params,
                timeout=(connect, read),
                stream=True,
            )
            _read_body(response, budget)
        except (requests.Timeout, requests.ConnectionError) as exc:
            last_error = _network_error(exc, url)
        except requests.RequestException as exc:
            # Invalid URL and the like: a configuration problem, not an outage.
            raise ProviderError(
                f"Bad provider address: {type(exc).__name__}",
                permanent=True,
                error_class=ErrorClass.CONFIG,
                detail=str(exc),
            ) from None
        else:
            if 200 <= response.status_code < 300:
                return _parse(response)
            last_error = _error_for_status(response)
            if last_error.error_class == ErrorClass.RATE_LIMITED and budget.on_rate_limited:
                budget.on_rate_limited(last_error)
            if last_error.permanent:
                raise last_error
            if last_error.retry_after is not None:
                delay = float(min(last_error.retry_after, MAX_RETRY_AFTER))
        if attempt < max_tries:
            wait = delay if delay is not None else _backoff(attempt)
            left = budget.remaining()
            if left is not None and wait >= left:
                break  # the wait alone would overrun the budget: hand the failure back now
            # The error is already redacted; the URL holds no secret (keys go in headers).
            logger.info("retrying %s in %.1fs after: %s", redact(url), wait, last_error)
            sleep(wait)
    assert last_error is not None
    raise last_error


def get_json(
    session: requests.Session,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    params: Mapping[str, Any] | None = None,
    max_tries: int = 4,
    sleep: Sleep = time.sleep,
    budget: Budget | None = None,
) -> dict[str, Any]:
    """Like :func:`get_response` but return only the parsed JSON object."""
    return get_response(
        session,
        url,
        headers=headers,
        params=params,
        max_tries=max_tries,
        sleep=sleep,
        budget=budget,
    ).body


def paginate_cursor(
    fetch_page: Callable[[str | None], dict[str, Any]],
    *,
    max_pages: int = MAX_PAGES,
) -> Iterator[dict[str, Any]]:
    """Yield each page of a ``has_more``/``next_page`` cursor listing (OpenAI and Anthropic).

    ``fetch_page(cursor)`` gets ``None`` for the first page. A hard page limit and a repeated
    cursor check keep a misbehaving provider from looping a sync forever.
    """
    cursor: str | None = None
    seen: set[str] = set()
    for _ in range(max_pages):
        page = fetch_page(cursor)
        yield page
        if page.get("has_more") is not True:
            return
        cursor = page.get("next_page")
        if not isinstance(cursor, str) or not cursor:
            raise ProviderError(
                "malformed response: has_more is true but next_page is missing",
                body_excerpt=json.dumps(page, default=str),
                error_class=ErrorClass.MALFORMED,
            )
        if cursor in seen:
            raise ProviderError(
                f"pagination loop: cursor {cursor[:40]!r} repeated",
                error_class=ErrorClass.MALFORMED,
            )
        seen.add(cursor)
    raise ProviderError(
        f"pagination stopped after {max_pages} pages (page limit)",
        error_class=ErrorClass.MALFORMED,
    )
