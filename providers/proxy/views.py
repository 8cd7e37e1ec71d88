"""`/proxy/<provider>/<path>`: authenticate the ingest key, forward, relay, record usage.

Every forwarded call on a recording route leaves exactly one UsageRecord, written before the
response ends: ok, failed (the provider said no: passed through unchanged, cost 0) or
incomplete (cut short by either side: whatever usage is known, unpriced if none).
"""

from __future__ import annotations

import json
import logging
import socket
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from alerts.enforcement import enforcement_check
from costtracker import metrics
from providers.connection import account_secrets
from providers.crypto import SecretUnreadable
from providers.key_limits import key_minute_admit
from providers.models import IngestKey, ProviderAccount
from providers.proxy import upstream
from providers.proxy.auth import ingest_key_from_request
from providers.proxy.recording import TagError, proxy_call_record, tags_admit, tags_from
from providers.proxy.routes import Route, route_for, routes_for
from providers.ratelimits.tracker import proxy_answer_observe
from providers.redaction import redact
from providers.registry import get_adapter_class
from usage.extraction import RequestUsage, StreamUsageTracker, add_include_usage, extract_usage
from usage.extraction.parsing import last_usage_body, usage_raw
from usage.models import RecordStatus

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 32 * 1024 * 1024  # images as base64 make big bodies; beyond this, 413


class UpstreamBroke(Exception):
    """The provider's stream ended abnormally; raised so the server aborts the client's
    connection instead of ending a truncated stream as if it were whole."""


def _error(status: int, kind: str, message: str, **headers: str) -> JsonResponse:
    # Shaped so both SDKs surface the message: OpenAI reads error.message, Anthropic type+error.
    body = {"type": "error", "error": {"type": kind, "message": message}}
    return JsonResponse(body, status=status, headers=headers or None)


proxy_error = _error  # the one shape of the proxy's errors; handler404/500 answer with it too


@dataclass
class _Call:
    account: ProviderAccount
    kind: str
    route: Route
    body: bytes
    tags: dict[str, str]
    started: datetime
    ingest_key_id: int
    path_model: str = ""  # the model a `{model}` route segment named
    # (budget id, period start) of the enforced budgets this call counts against.
    budget_periods: list = field(default_factory=list)
    answer: upstream.UpstreamResponse | None = None  # the provider's, once it answered

    def request_model(self) -> str:
        """The model the client asked for (in the path or the body); only read when the
        response did not say."""
        if self.path_model:
            return self.path_model
        payload = _json_or_none(self.body)
        model = payload.get("model") if isinstance(payload, dict) else None
        return model if isinstance(model, str) else ""

    def record(self, usage: RequestUsage, status: str, raw_usage: dict | None = None) -> None:
        """Never raises: by now the client's answer is on its way (or done), and a failure
        to keep the books must not cut it short. The failure is logged, without secrets."""
        if not self.route.records:
            return
        try:
            proxy_call_record(
                account=self.account,
                usage=usage,
                status=status,
                occurred_at=self.started,
                tags=self.tags,
                ingest_key_id=self.ingest_key_id,
                fallback_model="" if usage.model else self.request_model(),
                raw_usage=raw_usage,
                budget_periods=self.budget_periods,
            )
        except Exception:
            logger.exception("proxy: could not record a call for account %s", self.account.pk)
        if self.answer is not None:  # its rate-limit headers and 429s (in memory, never raises)
            proxy_answer_observe(
                kind=self.kind,
                account_id=self.account.pk,
                workspace_id=self.account.workspace_id,
                model=usage.model or self.request_model(),
                status=self.answer.status_code,
                headers=self.answer.headers,
            )


def _with_include_usage(body: bytes) -> bytes:
    payload = _json_or_none(body)
    if not isinstance(payload, dict):
        return body  # not ours to fix: the provider will answer 400 if it is wrong
    changed = add_include_usage(payload)
    if changed is payload:
        return body
    try:
        return json.dumps(changed).encode()
    except (ValueError, TypeError, RecursionError):
        return body


def _json_or_none(body: bytes):
    """A client's body parsed, or None when it is not JSON we can read: malformed, not UTF-8,
    or nested deeper than the parser's recursion limit (RecursionError). Whatever the body,
    the call is forwarded and recorded."""
    try:
        return json.loads(body)
    except (ValueError, TypeError, RecursionError):
        return None


@csrf_exempt
def proxy(request: HttpRequest, provider: str, path: str) -> HttpResponse:
    started = timezone.now()
    routes = routes_for(provider)
    if routes is None:
        return _error(404, "not_found_error", f"The proxy does not serve provider {provider!r}.")
    adapter = get_adapter_class(provider)
    key = ingest_key_from_request(request, adapter)
    if key is None:
        return _error(401, "authentication_error", "Invalid, revoked or missing ingest key.")
    account = key.account
    if account.provider.slug != provider:
        return _error(
            403, "permission_error", f"This ingest key is for a {account.provider.name} account."
        )
    match = route_for(provider, path)
    if match is None:
        return _error(404, "not_found_error", f"The proxy does not forward /{path}.")
    route = match.route
    if request.method != route.method:
        return _error(405, "invalid_request_error", "Method not allowed.", Allow=route.method)
    base_url = account.provider.base_url
    if not base_url:
        # Never guess a host: nothing is sent. X-Should-Retry: the SDKs would retry a 503.
        return _error(
            503,
            "upstream_not_configured",
            account.provider.no_upstream_message(),
            **{"X-Should-Retry": "false"},
        )
    try:
        provider_key = account.api_key.reveal() if account.api_key else ""
    except SecretUnreadable:
        logger.error("proxy: stored API key of account %s cannot be decrypted", account.pk)
        return _error(500, "api_error", "The stored API key cannot be read; see the server log.")
    if not provider_key and adapter.proxy_needs_key:
        return _error(400, "invalid_request_error", "No API key stored for this account.")

    body = request.read(MAX_BODY_BYTES + 1)
    if len(body) > MAX_BODY_BYTES:
        return _error(413, "invalid_request_error", "Request body too large.")
    if route.include_usage and b'"stream"' in body:
        body = _with_include_usage(body)

    try:
        tags = tags_from(request.META)
        tags_admit(account=account, tags=tags, at=started)
    except TagError as exc:  # refused before anything is sent: no call, nothing to record
        return _error(400, "invalid_request_error", str(exc))
    call = _Call(account, provider, route, body, tags, started, key.pk, match.model)
    if refused := _limits_refusal(adapter, key, call):
        return refused
    url = f"{base_url.rstrip('/')}/{match.upstream_path}"
    query = request.META.get("QUERY_STRING", "")
    if query := upstream.forwarded_query(query, without=adapter.proxy_key_query_param):
        url = f"{url}?{query}"
    headers = upstream.upstream_headers(request, kind=provider, provider_key=provider_key)
    metrics.proxy_forward_overhead(provider=provider, started=started)
    try:
        response = upstream.send(method=route.method, url=url, headers=headers, body=body)
    except upstream.BROKEN as exc:
        call.record(RequestUsage(), RecordStatus.FAILED, {"error": type(exc).__name__})
        reason = "timed out" if upstream.is_timeout(exc) else "could not be reached"
        return _error(502, "upstream_unreachable", f"The provider {reason}.")
    call.answer = response

    if response.status_code < 300 and upstream.is_stream(response):
        relay = _Relay(call, response)
        streamed = StreamingHttpResponse(
            relay, status=response.status_code, headers=upstream.returned_headers(response)
        )
        streamed["Cache-Control"] = "no-cache"
        streamed["X-Accel-Buffering"] = "no"  # keep nginx and friends from buffering events
        return streamed
    return _whole(call, response, _client_socket(request.META))


def _refusal(adapter, status: int, kind: str, message: str, **headers: str) -> JsonResponse:
    """The proxy's own refusal, shaped as the provider's (ProviderAdapter.proxy_error_body)."""
    return JsonResponse(
        adapter.proxy_error_body(kind, message), status=status, headers=headers or None
    )


def _limits_refusal(adapter, key: IngestKey, call: _Call) -> HttpResponse | None:
    """The key's request rate, then the enforced budgets covering the call (alerts/
    enforcement.py): checked before anything is sent, so a refused call costs nothing and
    leaves no record."""
    if key.requests_per_minute:
        wait = key_minute_admit(key_id=key.pk, limit=key.requests_per_minute, now=call.started)
        if wait is not None:
            return _refusal(
                adapter,
                429,
                "rate_limit_exceeded",
                f"This ingest key may make {key.requests_per_minute} requests per minute; "
                f"try again in {wait} s.",
                **{"Retry-After": str(wait)},
            )
    if not call.route.records:
        return None  # a model list costs nothing
    check = enforcement_check(
        account=call.account,
        ingest_key_id=key.pk,
        tags=call.tags,
        model=call.request_model,
        now=call.started,
    )
    if refusal := check.refusal:
        # Retrying would not help before the period ends: the SDKs honour X-Should-Retry.
        return _refusal(
            adapter, refusal.status, refusal.kind, refusal.message, **{"X-Should-Retry": "false"}
        )
    call.budget_periods = check.periods
    return None


def _whole(call: _Call, response: upstream.UpstreamResponse, client_socket=None) -> HttpResponse:
    """A non-streamed answer: passed back byte for byte, recorded before it ends."""
    try:
        content = response.content
    except upstream.BROKEN:
        response.close()
        # The provider took the call and may bill it: incomplete, unpriced.
        call.record(RequestUsage(), RecordStatus.INCOMPLETE)
        return _error(502, "upstream_error", "The provider's response was cut short.")
    headers = upstream.returned_headers(response)
    if response.status_code >= 400:
        # An error body may echo the stored key we swapped in; the client holds only an ingest
        # key and must never see it.
        content = _redact_bytes(content, account_secrets(account=call.account))
    if not call.route.records:
        return HttpResponse(content, status=response.status_code, headers=headers)
    body = _RecordedBody(call, response.status_code, content, client_socket)
    if len(content) < 2:
        body.record()
        return HttpResponse(content, status=response.status_code, headers=headers)
    answer = StreamingHttpResponse(body, status=response.status_code, headers=headers)
    answer["Content-Length"] = str(len(content))
    return answer


def _redact_bytes(content: bytes, secrets: tuple[str, ...]) -> bytes:
    """``content`` without any of the account's secrets (the same rule as every message)."""
    text = content.decode("utf-8", "replace")
    redacted = redact(text, secrets, shapes=False)
    return content if redacted == text else redacted.encode()


def _client_socket(meta: dict):
    """The client's socket when gunicorn serves us (it hands it over in the environ)."""
    return meta.get("gunicorn.socket") if hasattr(socket, "TCP_CORK") else None


def _cork(sock, on: bool) -> None:
    if sock is None:
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1 if on else 0)
    except OSError:
        pass  # not TCP (a unix socket), or already closed: nothing to hold back


class _RecordedBody:
    """The provider's answer, sent while its usage is written: everything but the last byte
    goes out first, so the client reads the headers and most of the body during the
    database's round trip; the last byte follows the commit (or the failure to write, which
    is logged), so the record exists before the response ends, as with a stream."""

    def __init__(self, call: _Call, status: int, content: bytes, sock) -> None:
        self.call, self.status, self.content = call, status, content
        self.sock = sock
        self._recorded = False

    def __iter__(self):
        # The server writes the headers and then the first part: corked, they leave as one
        # segment, so the client is woken once for both.
        _cork(self.sock, True)
        yield self.content[:-1]
        _cork(self.sock, False)
        self.record()
        yield self.content[-1:]

    def close(self) -> None:
        """Called by the server when the response is over, also after a client disconnect."""
        _cork(self.sock, False)
        self.record()

    def record(self) -> None:
        if self._recorded:
            return
        self._recorded = True
        if self.status >= 300:
            self.call.record(RequestUsage(), RecordStatus.FAILED, {"status": self.status})
            return
        usage, raw, status = RequestUsage(), None, RecordStatus.OK
        kind = self.call.kind
        try:
            parsed = json.loads(self.content, parse_float=Decimal)
            if isinstance(parsed, list):  # a stream sent whole as a JSON array of events
                parsed = last_usage_body(kind, parsed)
                if parsed is None:  # no usage in it: unknown, never a silent $0
                    status = RecordStatus.INCOMPLETE
            if isinstance(parsed, dict):
                raw = usage_raw(kind, parsed)
                usage = extract_usage(kind, parsed)
        except Exception:  # whatever the provider sent: recorded unpriced, never cut short
            usage, raw = RequestUsage(), None
            logger.warning("proxy: unreadable usage in a %s response", kind)
        self.call.record(usage, status, raw)


class _Relay:
    """The streamed body: chunks go on as they arrive; the record is written after the last
    one (before the server ends the response), or when either side breaks off."""

    def __init__(self, call: _Call, response: upstream.UpstreamResponse) -> None:
        self.call = call
        self.response = response
        self.tracker = StreamUsageTracker(call.kind, call.route.style)
        self._recorded = False
        self._chunks = self._run()

    def __iter__(self):
        return self._chunks

    def close(self) -> None:
        """Called by the server when the response is over, also after a client disconnect."""
        self._chunks.close()  # GeneratorExit inside _run when it is mid-stream
        self._finish(complete=False)  # no-op if _run already recorded; else it never started

    def _run(self):
        marker = self.call.route.end_marker
        saw_end, tail = marker is None, b""
        complete, broke = False, None
        try:
            for chunk in upstream.iter_body(self.response):
                self.tracker.feed(chunk)
                if not saw_end:
                    window = tail + chunk
                    saw_end = marker in window
                    tail = window[-len(marker) :]
                yield chunk
            complete = True
        except upstream.BROKEN as exc:
            broke = exc
        finally:
            self._finish(complete=complete and saw_end)
        if broke is not None:
            raise UpstreamBroke("the provider's stream broke off") from broke

    def _finish(self, *, complete: bool) -> None:
        if self._recorded:
            return
        self._recorded = True
        if complete:
            self.response.release_conn()  # read to the end: the connection can be reused
        else:
            self.response.close()  # unread bytes left: never hand this connection on
        try:
            usage = self.tracker.usage()
        except Exception:  # whatever the stream held: recorded unpriced, never cut short
            usage = RequestUsage()
        status = RecordStatus.OK if complete and usage.found else RecordStatus.INCOMPLETE
        self.call.record(usage, status)
