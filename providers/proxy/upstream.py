"""Talking to the provider: one pooled session, filtered headers, bodies read as they arrive."""

from __future__ import annotations

import http.client
import http.cookiejar
import urllib.request
from collections.abc import Iterator

import requests
import urllib3
from django.conf import settings
from django.http import HttpRequest
from requests.adapters import HTTPAdapter

# Request headers a client may pass on. Everything else stays behind: cookies, host, the
# client's authorization / x-api-key (its ingest key), hop-by-hop and X-Tracker-* headers.
FORWARDED_REQUEST_HEADERS = (
    "accept",
    "anthropic-version",
    "anthropic-beta",
    "openai-organization",
    "openai-project",
    "openai-beta",
    "idempotency-key",
    "user-agent",
)
# Response headers handed back: content type, request ids, rate limits.
RETURNED_RESPONSE_HEADERS = frozenset(
    {"content-type", "retry-after", "request-id", "x-request-id", "cf-ray"}
)
RETURNED_RESPONSE_PREFIXES = ("x-ratelimit-", "anthropic-", "openai-", "x-groq-")
ANTHROPIC_VERSION = "2023-06-01"
READ_CHUNK = 16 * 1024

# Errors a body read can end with when the provider goes away mid-response.
BROKEN = (
    requests.RequestException,
    urllib3.exceptions.HTTPError,
    http.client.HTTPException,
    OSError,
)


def _session() -> requests.Session:
    session = requests.Session()
    # One session serves every account: a cookie one provider response sets must never ride
    # along on another account's call, so the jar accepts none.
    session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    # Enough pooled connections for every gunicorn thread to keep its own alive.
    size = getattr(settings, "PROXY_POOL_SIZE", 64)
    adapter = HTTPAdapter(pool_connections=8, pool_maxsize=size, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    # Reading proxy variables from the environment costs ~0.5 ms a call; skip it when the
    # operator set none (trust_env also covers NO_PROXY, so keep it whenever any is set).
    session.trust_env = bool(urllib.request.getproxies())
    return session


# One per process: connection pooling and keep-alive to each provider.
SESSION = _session()


def timeouts() -> tuple[float, float]:
    # Long generations stream for minutes; the read timeout is per read, not the whole call.
    return (
        getattr(settings, "PROXY_CONNECT_TIMEOUT", 5.0),
        getattr(settings, "PROXY_READ_TIMEOUT", 300.0),
    )


def upstream_headers(request: HttpRequest, *, kind: str, provider_key: str) -> dict[str, str]:
    headers = {"Accept-Encoding": "gzip, deflate"}
    if content_type := request.META.get("CONTENT_TYPE"):
        headers["Content-Type"] = content_type
    for name in FORWARDED_REQUEST_HEADERS:
        value = request.META.get("HTTP_" + name.upper().replace("-", "_"))
        if value:
            headers[name] = value
    if kind == "anthropic":
        headers.setdefault("anthropic-version", ANTHROPIC_VERSION)
        headers["x-api-key"] = provider_key
    elif provider_key:
        headers["Authorization"] = f"Bearer {provider_key}"
    return headers


def returned_headers(response: requests.Response) -> dict[str, str]:
    return {
        name: value
        for name, value in response.headers.items()
        if name.lower() in RETURNED_RESPONSE_HEADERS
        or name.lower().startswith(RETURNED_RESPONSE_PREFIXES)
    }


def send(*, method: str, url: str, headers: dict[str, str], body: bytes) -> requests.Response:
    """Start the call; the body is read later (stream=True). Redirects are never followed."""
    return SESSION.request(
        method,
        url,
        headers=headers,
        data=body or None,
        stream=True,
        timeout=timeouts(),
        allow_redirects=False,
    )


def iter_body(response: requests.Response) -> Iterator[bytes]:
    """Yield the (decoded) body as it arrives: read1 returns what is there, never waits to fill
    a buffer, so each SSE event goes on at once, chunked or not."""
    raw = response.raw
    while True:
        data = raw.read1(READ_CHUNK, decode_content=True)
        if not data:
            return
        yield data


def is_stream(response: requests.Response) -> bool:
    content_type = response.headers.get("content-type", "").lower()
    return content_type.startswith(("text/event-stream", "application/x-ndjson"))
