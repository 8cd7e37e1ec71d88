"""The one HTTP wrapper every provider adapter goes through.

It always passes a timeout, parses JSON with ``parse_float=Decimal`` (money is never a float),
retries what is worth retrying (429, 5xx, timeouts, connection errors) with bounded tries, and
turns every failure into one error type, :class:`ProviderError`, whose ``permanent`` flag tells
the caller whether trying again later can help.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import requests

logger = logging.getLogger(__name__)

# Module constants rather than literals so tests can shorten the read timeout.
CONNECT_TIMEOUT: float = 5
READ_TIMEOUT: float = 30
MAX_RETRY_AFTER: int = 60  # never wait longer than this on a provider's say-so
BACKOFF_BASE: float = 1.0
MAX_PAGES: int = 1000
EXCERPT_CHARS: int = 500

Sleep = Callable[[float], Any]


class ProviderError(Exception):
    """A provider call failed.

    ``permanent`` is True when retrying cannot help without a person changing something (a
    rejected key, a missing permission, a wrong organization); False for outages, rate limits and
    garbled responses.
    """

    def __init__(
        self,
        message: str,
        *,
        permanent: bool = False,
        status: int | None = None,
        body_excerpt: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.status = status
        self.body_excerpt = body_excerpt[:EXCERPT_CHARS]

    def __str__(self) -> str:
        return self.message


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


def _backoff(attempt: int) -> float:
    # Exponential (1, 2, 4, ... seconds) plus up to one base unit of jitter, so many accounts
    # syncing at once do not retry in lock-step.
    delay = BACKOFF_BASE * 2 ** (attempt - 1)
    return min(delay + random.uniform(0, BACKOFF_BASE), MAX_RETRY_AFTER)


def _retry_after(response: requests.Response) -> float | None:
    # Providers send integer seconds (OpenAI spec, Groq, GitHub). An HTTP date or junk falls
    # back to our own backoff rather than trusting it.
    value = response.headers.get("Retry-After", "").strip()
    if not value.isdigit():
        return None
    return float(min(int(value), MAX_RETRY_AFTER))


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
    body = excerpt(text)
    if _is_rate_limited(response):
        return ProviderError(
            f"rate limited ({status})", permanent=False, status=status, body_excerpt=body
        )
    if status == 401:
        return ProviderError("key rejected (401)", permanent=True, status=status, body_excerpt=body)
    if status == 403:
        message = _with_detail("key lacks admin permission (403)", text)
        return ProviderError(message, permanent=True, status=status, body_excerpt=body)
    if status == 404:
        return ProviderError("not found (404)", permanent=True, status=status, body_excerpt=body)
    if status >= 500:
        message = _with_detail(f"provider error ({status})", text)
        return ProviderError(message, permanent=False, status=status, body_excerpt=body)
    # Other 4xx (400, 422): the request or the account is wrong; a retry cannot fix it.
    message = _with_detail(f"request rejected ({status})", text)
    return ProviderError(message, permanent=True, status=status, body_excerpt=body)


def _parse(response: requests.Response) -> JsonResponse:
    text = response.text
    try:
        body = json.loads(text, parse_float=Decimal)
    except ValueError as exc:
        raise ProviderError(
            f"malformed response: not JSON ({exc})",
            status=response.status_code,
            body_excerpt=excerpt(text),
        ) from exc
    if not isinstance(body, dict):
        raise ProviderError(
            "malformed response: expected a JSON object",
            status=response.status_code,
            body_excerpt=excerpt(text),
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
) -> JsonResponse:
    """GET ``url`` and return its JSON object body and headers, retrying temporary failures.

    List values in ``params`` are sent as repeated keys, so ``{"group_by[]": ["model"]}``
    becomes ``group_by[]=model`` (the bracket form OpenAI and Anthropic document).
    """
    last_error: ProviderError | None = None
    for attempt in range(1, max_tries + 1):
        delay: float | None = None
        try:
            response = session.get(
                url,
                headers=dict(headers or {}),
                params=params,
                timeout=(CONNECT_TIMEOUT, READ_TIMEOUT),
            )
        except requests.ConnectTimeout as exc:
            last_error = ProviderError(f"provider unreachable: connect timeout ({exc})")
        except requests.Timeout as exc:
            last_error = ProviderError(f"provider timed out: {exc}")
        except requests.ConnectionError as exc:
            last_error = ProviderError(f"provider unreachable: {exc}")
        except requests.RequestException as exc:
            # Invalid URL and the like: a configuration problem, not an outage.
            raise ProviderError(f"request failed: {exc}", permanent=True) from exc
        else:
            if 200 <= response.status_code < 300:
                return _parse(response)
            last_error = _error_for_status(response)
            if last_error.permanent:
                raise last_error
            if _is_rate_limited(response):
                delay = _retry_after(response)
        if attempt < max_tries:
            wait = delay if delay is not None else _backoff(attempt)
            logger.info("retrying %s in %.1fs after: %s", url, wait, last_error)
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
) -> dict[str, Any]:
    """Like :func:`get_response` but return only the parsed JSON object."""
    return get_response(
        session, url, headers=headers, params=params, max_tries=max_tries, sleep=sleep
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
                body_excerpt=excerpt(json.dumps(page, default=str)),
            )
        if cursor in seen:
            raise ProviderError(f"pagination loop: cursor {cursor[:40]!r} repeated")
        seen.add(cursor)
    raise ProviderError(f"pagination stopped after {max_pages} pages (page limit)")
