"""Talking to the provider: pooled connections, filtered headers, bodies read as they arrive.

urllib3 directly rather than requests: on the proxy's hot path requests' request preparation
cost ~0.9 ms a call here, a third of the whole latency budget. urllib3 also keeps no cookie
jar, so a cookie one provider response sets can never ride along on another account's call.
"""

from __future__ import annotations

import http.client
import urllib.request
from collections.abc import Iterator
from functools import cache
from urllib.parse import unquote_plus, urlsplit

import urllib3
from django.conf import settings
from django.http import HttpRequest

from providers.registry import ADAPTERS, get_adapter_class

# Request headers a client may pass on. Everything else stays behind: cookies, host, the
# client's authorization / x-api-key (its ingest key), hop-by-hop and X-Tracker-* headers.
# Each provider adds its own (ProviderAdapter.proxy_forwarded_headers): see forwarded_headers().
FORWARDED_REQUEST_HEADERS = ("accept", "idempotency-key", "user-agent")
# Response headers handed back: content type, request ids, rate limits.
RETURNED_RESPONSE_HEADERS = frozenset(
    {"content-type", "retry-after", "request-id", "x-request-id", "cf-ray"}
)
RETURNED_RESPONSE_PREFIXES = ("x-ratelimit-",)  # plus each adapter's proxy_returned_headers


@cache
def forwarded_headers(kind: str) -> tuple[str, ...]:
    """Request headers passed on to ``kind``: the common ones and that provider's own (one
    provider's headers, e.g. OpenRouter's attribution, are no business of another's), never
    one any provider's clients present their (ingest) key in."""
    adapters = [get_adapter_class(name) for name in ADAPTERS]
    own = get_adapter_class(kind).proxy_forwarded_headers
    keys = {name.lower() for adapter in adapters for name in adapter.proxy_key_headers}
    names = dict.fromkeys((*FORWARDED_REQUEST_HEADERS, *own))
    return tuple(name for name in names if name.lower() not in keys)


@cache
def returned_prefixes() -> tuple[str, ...]:
    """Header name prefixes handed back: the common ones and every provider's own."""
    own = (
        prefix
        for kind in ADAPTERS
        for prefix in get_adapter_class(kind).proxy_returned_header_prefixes
    )
    return tuple(dict.fromkeys((*RETURNED_RESPONSE_PREFIXES, *own)))


READ_CHUNK = 16 * 1024

# Errors a call or a body read can end with when the provider is unreachable or goes away.
BROKEN = (urllib3.exceptions.HTTPError, http.client.HTTPException, OSError)


class UpstreamResponse:
    """The few things the proxy reads of a provider's answer, over a urllib3 response."""

    def __init__(self, raw: urllib3.BaseHTTPResponse) -> None:
        self.raw = raw
        self.status_code = raw.status
        self.headers = raw.headers  # case-insensitive

    @property
    def content(self) -> bytes:
        data = self.raw.read(decode_content=True)
        self.raw.release_conn()
        return data

    def read1(self) -> bytes:
        return self.raw.read1(READ_CHUNK, decode_content=True)

    def release_conn(self) -> None:
        self.raw.release_conn()

    def close(self) -> None:
        self.raw.close()


@cache
def _pool(proxy_url: str | None) -> urllib3.PoolManager:
    # Enough pooled connections per host for every gunicorn thread to keep its own alive.
    size = getattr(settings, "PROXY_POOL_SIZE", 64)
    if proxy_url:
        return urllib3.ProxyManager(proxy_url, num_pools=8, maxsize=size, retries=False)
    return urllib3.PoolManager(num_pools=8, maxsize=size, retries=False)


def _pool_for(url: str) -> urllib3.PoolManager:
    parts = urlsplit(url)
    return _pool_for_host(parts.scheme, parts.hostname or "")


@cache
def _pool_for_host(scheme: str, hostname: str) -> urllib3.PoolManager:
    """Honour HTTP(S)_PROXY / NO_PROXY from the environment, as requests would.

    Decided once per host and process: reading the proxy variables walks the whole
    environment, ~0.2 ms a call on the proxy's hot path, and a process's environment is
    fixed once it has started.
    """
    proxies = urllib.request.getproxies()
    proxy = proxies.get(scheme)
    if proxy and not urllib.request.proxy_bypass(hostname):
        return _pool(proxy)
    return _pool(None)


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
    for name in forwarded_headers(kind):
        value = request.META.get("HTTP_" + name.upper().replace("-", "_"))
        if value:
            headers[name] = value
    get_adapter_class(kind).proxy_auth_headers(headers, provider_key)
    return headers


def forwarded_query(query: str, *, without: str = "") -> str:
    """The client's query string as it goes upstream: verbatim, less every ``without``
    parameter (a key presented there is an ingest key, never the provider's). A part is
    dropped when any of its ";"-separated pieces has that name, in case the provider splits
    on ";" where we split on "&"."""
    if not without or not query:
        return query
    kept = [
        part
        for part in query.split("&")
        if not any(
            unquote_plus(piece.partition("=")[0]).strip() == without for piece in part.split(";")
        )
    ]
    return "&".join(kept)


def returned_headers(response: UpstreamResponse) -> dict[str, str]:
    return {
        name: value
        for name, value in response.headers.items()
        if name.lower() in RETURNED_RESPONSE_HEADERS or name.lower().startswith(returned_prefixes())
    }


def send(*, method: str, url: str, headers: dict[str, str], body: bytes) -> UpstreamResponse:
    """Start the call; the body is read later. Redirects are never followed, nothing retried."""
    connect, read = timeouts()
    raw = _pool_for(url).request(
        method,
        url,
        headers=headers,
        body=body or None,
        preload_content=False,
        decode_content=True,
        redirect=False,
        retries=False,
        timeout=urllib3.Timeout(connect=connect, read=read),
    )
    return UpstreamResponse(raw)


def is_timeout(exc: BaseException) -> bool:
    # NewConnectionError (refused, no route) subclasses ConnectTimeoutError in urllib3.
    return isinstance(exc, urllib3.exceptions.TimeoutError) and not isinstance(
        exc, urllib3.exceptions.NewConnectionError
    )


def iter_body(response: UpstreamResponse) -> Iterator[bytes]:
    """Yield the (decoded) body as it arrives: read1 returns what is there, never waits to fill
    a buffer, so each SSE event goes on at once, chunked or not."""
    while True:
        data = response.read1()
        if not data:
            return
        yield data


def is_stream(response: UpstreamResponse) -> bool:
    content_type = response.headers.get("content-type", "").lower()
    return content_type.startswith(("text/event-stream", "application/x-ndjson"))
