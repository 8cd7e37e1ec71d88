"""Ingestion API: `POST /api/usage/events` with an account's ingest key.

An ingest key (`Authorization: Bearer cti_…`) may only write per-request usage for its one
account: it is accepted here and nowhere else, and this endpoint reads nothing back.

Body: a JSON list of up to 1,000 events, or `{"events": [...]}`. Each event:

    {"request_id": "req-123",                 # required idempotency key, string ≤ 200
     "occurred_at": "2026-11-15T12:00:00Z",   # ISO 8601, optional (default: now); a time
                                              # without an offset is taken as UTC
     "model": "gpt-4o-mini",                  # optional when the body names it
     "usage": {...},                          # the provider's usage object as returned, a
                                              # whole response body, or normalised counts
     "tags": {"project": "…", "user": "…", "feature": "…"},   # optional strings, each at
                                              # most 200 characters and one of at most 1,000
                                              # distinct values of its tag for the account
                                              # that UTC day (usage.bounds)
     "status": "ok" | "failed" | "incomplete"}                # optional, default "ok"; a
                                              # Responses body's own "completed" is ok and
                                              # "cancelled" incomplete

Without a `usage` key the event itself is read as a provider response body (e.g. an Ollama
final object or a Groq stream chunk carrying usage in its envelope). Usage is read the way the
key's account's provider reports it (`usage.extraction.extract_usage`).

The answer is 200 with one result per item — created, duplicate (the request id was seen
before; nothing is stored) or rejected (with the reason naming the field) — plus counts. One
bad item never drops the good ones. 400 only when the body as a whole is unusable (malformed
JSON, not a list, more than 1,000 events); 401 for a missing, unknown or revoked key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest, HttpResponse
from django.http.request import RawPostDataException
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import authentication, exceptions, permissions, serializers, status
from rest_framework.views import APIView

from costtracker import jsontext, metrics
from providers.adapters.base import UsageFormat
from providers.key_memory import ingest_key_forget, ingest_key_remembered
from providers.models import IngestKey
from providers.selectors import ingest_key_lookup
from providers.services import ingest_key_mark_used
from usage.bounds import TAG_KEYS, tag_problem
from usage.db import WIDE
from usage.extraction import extract_usage, usage_format
from usage.extraction.parsing import usage_envelope_paths, usage_raw
from usage.models import RecordStatus
from usage.services.prices import shared_price_book
from usage.services.requests import IngestKeyInactive, RequestEvent, request_events_record
from usage.services.tag_values import tag_values_problem, tag_values_refused

API_DESCRIPTION = __doc__
MAX_EVENTS = 1000
# How long a process may answer a key lookup from memory when it cannot listen for key changes
# (SQLite; see providers/key_memory.py). The write re-checks the key in the same statement, so
# revocation stops writes at once; account settings may lag this long.
RECENT_KEY_SECONDS = 10
MAX_ID_LENGTH = 200
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
# Clocks drift; an event stamped a little ahead of ours is still believable.
FUTURE_SLACK = timedelta(days=1)
AUDIO_QUANTUM = Decimal("0.001")
MAX_DEPTH = 24
MAX_NODES = 5000
MAX_RAW_CHARS = 16_000
_OWN_KEYS = frozenset({"request_id", "occurred_at", "model", "usage", "tags", "status"})
_STATUSES = {RecordStatus.OK, RecordStatus.FAILED, RecordStatus.INCOMPLETE}
# An event that is itself a provider's response body carries the provider's own `status`
# (OpenAI and xAI Responses: completed, failed, incomplete, cancelled; failed and incomplete
# mean what ours do). Read as ours, "completed" was refused; these are what they mean here.
_PROVIDER_STATUSES = {"completed": RecordStatus.OK, "cancelled": RecordStatus.INCOMPLETE}


def max_body_bytes() -> int:
    # 1,000 whole response bodies of a few KB each; DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB) is
    # tuned for forms, so this endpoint has its own limit.
    return int(getattr(settings, "INGEST_MAX_BODY_BYTES", 20 * 1024 * 1024))


class BodyTooLarge(ValueError):
    """The request body is longer than the limit."""


def read_body(request: HttpRequest, *, limit: int) -> bytes:
    """The request body, at most `limit` bytes; BodyTooLarge past it, before reading it all
    when Content-Length says so."""
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > limit:
        raise BodyTooLarge()
    try:
        # Read the stream ourselves: request.body would apply the 2.5 MB form limit.
        raw = request.read(limit + 1)
    except RawPostDataException:  # a middleware already read it
        raw = request.body
    if len(raw) > limit:
        raise BodyTooLarge()
    return raw


class EventError(ValueError):
    """One event is unusable; the message names the field."""


def _presented_key(request: HttpRequest) -> str:
    """The key text in `Authorization: Bearer cti_…`; NotAuthenticated without one."""
    header = authentication.get_authorization_header(request).split()
    if not header or header[0].lower() != b"bearer":
        raise exceptions.NotAuthenticated()
    if len(header) != 2:
        raise exceptions.AuthenticationFailed("Malformed Authorization header.")
    try:
        return header[1].decode("ascii")
    except UnicodeDecodeError:
        raise exceptions.AuthenticationFailed("Invalid ingest key.") from None


def ingest_key_from_header(request: HttpRequest, *, recent: bool = False) -> IngestKey:
    """The active ingest key in `Authorization: Bearer cti_…`; AuthenticationFailed if bad,
    NotAuthenticated if there is none. `recent`: may come from this process's memory
    (providers/key_memory.py), for callers whose write checks the key again."""
    raw = _presented_key(request)
    if recent:
        key = ingest_key_remembered(raw=raw, fallback_max_age=RECENT_KEY_SECONDS)
    else:
        key = ingest_key_lookup(raw=raw)
    if key is None:
        raise exceptions.AuthenticationFailed("Invalid or revoked ingest key.")
    ingest_key_mark_used(key=key)
    return key


class IngestKeyAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer cti_…`. The principal is the key, never its owner: whatever this
    view does, it cannot act as the user."""

    def authenticate(self, request):
        try:
            return (AnonymousUser(), ingest_key_from_header(request))
        except exceptions.NotAuthenticated:
            return None

    def authenticate_header(self, request):
        return 'Bearer realm="ingest"'


class HasIngestKey(permissions.BasePermission):
    def has_permission(self, request, view):
        return isinstance(request.auth, IngestKey)


def _check_json(value: Any) -> None:
    """Refuse what a database cannot store (NUL, lone surrogates) or nesting without end."""
    stack = [(value, 0)]
    nodes = 0
    while stack:
        item, depth = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            raise EventError("item: too large")
        if depth > MAX_DEPTH:
            raise EventError("item: nested too deeply")
        if isinstance(item, dict):
            for key, child in item.items():
                _check_text(key)
                stack.append((child, depth + 1))
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, str):
            _check_text(item)


def _check_shape(value: Any) -> None:
    """_check_json's limits on size and nesting alone, for text known to be storable.

    The same verdicts in half the time: only containers go on the stack, their children are
    counted in bulk (on the ingestion hot path this walk runs for every event). Parsed JSON
    holds plain dicts and lists, hence the exact type checks.
    """
    if not isinstance(value, dict | list):
        return
    stack = [(value, 0)]
    nodes = 1
    while stack:
        item, depth = stack.pop()
        children = item.values() if type(item) is dict else item
        if not children:
            continue
        if depth >= MAX_DEPTH:  # its children would sit deeper than allowed
            raise EventError("item: nested too deeply")
        nodes += len(children)
        if nodes > MAX_NODES:
            raise EventError("item: too large")
        for child in children:
            if type(child) is dict or type(child) is list:
                stack.append((child, depth + 1))


def may_hold_unstorable_text(raw: bytes) -> bool:
    """Whether a posted JSON body can hold NUL or a lone surrogate in some string.

    Without any of these bytes it cannot: JSON refuses raw control characters inside strings,
    so NUL needs a `\\u` escape; json.loads reads bytes with `surrogatepass`, so a lone
    surrogate needs an escape or the UTF-8-style bytes ED A0–ED BF; and a UTF-16 or UTF-32
    body (which json.loads also accepts) is full of 0x00 bytes. Nearly every real body has
    none of them and skips the per-string check; a false alarm only costs that check.
    """
    return b"\\u" in raw or b"\x00" in raw or b"\xed" in raw


def _check_text(text: str) -> None:
    if "\x00" in text:
        raise EventError("item: text must not contain NUL characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise EventError("item: text is not valid Unicode") from None


def _short_string(item: dict, name: str, *, required: bool = False) -> str | None:
    value = item.get(name)
    if value is None:
        if required:
            raise EventError(f"{name}: required")
        return None
    if not isinstance(value, str):
        raise EventError(f"{name}: expected a string")
    value = value.strip()
    if required and not value:
        raise EventError(f"{name}: must not be empty")
    if len(value) > MAX_ID_LENGTH:
        raise EventError(f"{name}: at most {MAX_ID_LENGTH} characters")
    return value


def _occurred_at(value: Any, now: datetime) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise EventError("occurred_at: expected an ISO 8601 date-time string")
    try:
        parsed = parse_datetime(value.strip())
        if parsed is not None:
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)  # documented: no offset means UTC
            parsed = parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        parsed = None
    if parsed is None:
        raise EventError("occurred_at: not an ISO 8601 date-time (e.g. 2026-11-15T12:00:00Z)")
    if parsed < EARLIEST or parsed > now + FUTURE_SLACK:
        raise EventError("occurred_at: out of range (after 2000 and not in the future)")
    return parsed


def _tags(value: Any) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise EventError("tags: expected an object with project, user and feature")
    tags = {}
    for key, tag in value.items():
        if key not in TAG_KEYS:
            raise EventError(f"tags.{key[:40]}: unknown tag (allowed: {', '.join(TAG_KEYS)})")
        if tag is None:
            continue
        if not isinstance(tag, str):
            raise EventError(f"tags.{key}: expected a string")
        if problem := tag_problem(tag):
            raise EventError(f"tags.{key}: {problem}")
        tags[key] = tag
    return tags


def _usage_part(kind: str, body: dict) -> dict:
    """The part of a body that holds its usage: never message content."""
    raw = usage_raw(kind, body)  # `usage`, or the provider's own usage_object_keys
    if raw is not None:
        return raw
    if usage_format(kind) == UsageFormat.LOCAL and ("done" in body or "eval_count" in body):
        keep = ("model", "prompt_eval_count", "eval_count", "total_duration", "eval_duration")
        return {k: body[k] for k in keep if k in body}
    for envelope in usage_envelope_paths():
        key, _, sub = envelope.partition(".")
        if isinstance(body.get(key), dict):
            return {key: {sub: body[key].get(sub)}}
    return {k: v for k, v in body.items() if k not in ("choices", "content", "message")}


def _raw_usage(kind: str, body: dict) -> dict | None:
    """What to keep for audit: the usage object, never message content."""
    raw = _usage_part(kind, body)
    try:
        size = len(jsontext.dumps(raw))
    except (TypeError, ValueError):
        return None
    return raw if size <= MAX_RAW_CHARS else {"omitted": f"{size} characters"}


def event_from_item(
    *, kind: str, item: Any, now: datetime, check_text: bool = True
) -> RequestEvent:
    """Validate one posted item into a RequestEvent. Raises EventError naming the field.

    `check_text=False` when the body cannot hold unstorable text (may_hold_unstorable_text).
    """
    if not isinstance(item, dict):
        raise EventError("item: expected a JSON object")
    if check_text:
        _check_json(item)
    request_id = _short_string(item, "request_id", required=True)
    occurred_at = _occurred_at(item.get("occurred_at"), now)
    model = _short_string(item, "model")
    if "usage" in item:
        body = item["usage"]
        if not isinstance(body, dict):
            raise EventError("usage: expected a JSON object")
    else:
        body = {k: v for k, v in item.items() if k not in _OWN_KEYS}
    if not check_text:
        _check_shape(item)  # the same limits as _check_json(item), without the text
    try:
        usage = extract_usage(kind, body)
    except ValueError as exc:
        message = str(exc)
        raise EventError(message if "usage" in message else f"usage.{message}") from None
    except (ArithmeticError, TypeError, AttributeError, RecursionError):
        raise EventError("usage: unreadable") from None
    if not usage.found:
        raise EventError("usage: no token counts found")
    # Counts outside the input bounds (usage/bounds.py) are rejected, naming the field, by
    # the write itself (request_events_record), which every path goes through.
    # To the column's 3 places: PostgreSQL's numeric refuses exponents like 1e-99999 outright
    # (in a context wide enough for any figure: one too large is rejected next).
    usage.audio_seconds = usage.audio_seconds.quantize(AUDIO_QUANTUM, context=WIDE)
    usage.model = model or usage.model.strip()[:MAX_ID_LENGTH]
    if not usage.model:
        raise EventError("model: required (in the event or the response body)")
    status_value = item.get("status", RecordStatus.OK)
    if isinstance(status_value, str):
        status_value = _PROVIDER_STATUSES.get(status_value, status_value)
    if not isinstance(status_value, str) or status_value not in _STATUSES:
        raise EventError("status: expected ok, failed or incomplete")
    return RequestEvent(
        request_id=request_id,
        usage=usage,
        occurred_at=occurred_at,
        status=status_value,
        tags=_tags(item.get("tags")),
        raw_usage=_raw_usage(kind, body),
    )


@dataclass
class ItemResult:
    index: int
    request_id: str | None
    status: str
    reason: str = ""


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def parse_body(raw: bytes) -> list:
    """The list of posted items. Raises ValidationError (400) naming what is wrong."""
    try:
        data = json.loads(raw, parse_float=Decimal, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, bad UTF-8, 5,000-digit ints
        message = str(exc)[:200]
        raise exceptions.ValidationError({"body": f"malformed JSON: {message}"}) from None
    if isinstance(data, dict) and "events" in data:
        data = data["events"]
        field = "events"
    else:
        field = "body"
    if not isinstance(data, list):
        raise exceptions.ValidationError(
            {field: 'expected a JSON list of events or {"events": [...]}'}
        )
    if len(data) > MAX_EVENTS:
        raise exceptions.ValidationError(
            {field: f"at most {MAX_EVENTS} events per request (got {len(data)})"}
        )
    return data


def ingest_items(*, key: IngestKey, items: list, check_text: bool = True) -> list[ItemResult]:
    """Validate every item, record the valid ones in one call, report per item.

    Raises IngestKeyInactive, writing nothing, when the key is no longer active.
    """
    account = key.account
    kind = account.provider.slug
    now = timezone.now()
    results: list[ItemResult] = []
    events: list[RequestEvent] = []
    first_index: dict[str, int] = {}
    for index, item in enumerate(items):
        request_id = item.get("request_id") if isinstance(item, dict) else None
        request_id = request_id[:MAX_ID_LENGTH] if isinstance(request_id, str) else None
        try:
            event = event_from_item(kind=kind, item=item, now=now, check_text=check_text)
        except EventError as exc:
            results.append(ItemResult(index, request_id, "rejected", str(exc)))
            continue
        if event.request_id in first_index:
            reason = f"same request_id as item {first_index[event.request_id]}"
            results.append(ItemResult(index, event.request_id, "duplicate", reason))
            continue
        first_index[event.request_id] = index
        events.append(event)
        results.append(ItemResult(index, event.request_id, "pending"))
    events = _within_tag_bound(account_id=account.pk, events=events, results=results, now=now)
    reasons: dict[str, str] = {}
    outcome = request_events_record(
        account=account,
        events=events,
        reasons=reasons,
        book=shared_price_book(),
        ingest_key_id=key.pk,
    )
    for result in results:
        if result.status == "pending":
            result.status = outcome[result.request_id]
            if result.status == "duplicate":
                result.reason = "request_id already recorded"
            elif result.status == "rejected":
                result.reason = reasons.get(result.request_id, "")
    return results


def _within_tag_bound(
    *, account_id: int, events: list[RequestEvent], results: list[ItemResult], now: datetime
) -> list[RequestEvent]:
    """The events whose tags are within the bound on distinct values a day
    (usage.bounds.TAG_MAX_VALUES); the others' results become "rejected", naming the tag."""
    tagged = [((e.occurred_at or now).date(), e.tags) for e in events]
    refused = tag_values_refused(account_id=account_id, tagged=tagged)
    if not refused:
        return events
    reasons = {
        events[i].request_id: f"tags.{tag}: {tag_values_problem(tag)}" for i, tag in refused.items()
    }
    for result in results:
        if result.status == "pending" and result.request_id in reasons:
            result.status, result.reason = "rejected", reasons[result.request_id]
    return [e for i, e in enumerate(events) if i not in refused]


def _json_response(data, *, status: int = 200) -> HttpResponse:
    """Compact JSON, as DRF renders it, without its per-response machinery."""
    return HttpResponse(jsontext.dumps_bytes(data), status=status, content_type="application/json")


class _ItemResultSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    request_id = serializers.CharField(allow_null=True)
    status = serializers.ChoiceField(choices=["created", "duplicate", "rejected"])
    reason = serializers.CharField(allow_blank=True)


class UsageEventsApi(APIView):
    """Record per-request usage for the ingest key's account."""

    authentication_classes = [IngestKeyAuthentication]
    permission_classes = [HasIngestKey]
    throttle_classes: list = []

    def dispatch(self, request, *args, **kwargs):
        # A POST with a valid key is answered here, without DRF's request wrapping, content
        # negotiation and rendering: on single-event POSTs they cost a fifth of the CPU. The
        # rest (401, 405, OPTIONS) goes through DRF, which authenticates again and answers.
        if request.method == "POST":
            try:
                key = ingest_key_from_header(request, recent=True)
            except exceptions.APIException:
                pass
            else:
                return self.post(request, key)
        return super().dispatch(request, *args, **kwargs)

    @extend_schema(
        summary="Ingest per-request usage events",
        description=API_DESCRIPTION,
        request={"application/json": {"type": "array", "items": {"type": "object"}}},
        responses={
            200: inline_serializer(
                "IngestResult",
                {
                    "created": serializers.IntegerField(),
                    "duplicate": serializers.IntegerField(),
                    "rejected": serializers.IntegerField(),
                    "results": _ItemResultSerializer(many=True),
                },
            ),
            400: OpenApiResponse(description="Malformed JSON, not a list, over 1,000 events."),
            401: OpenApiResponse(description="Missing, unknown or revoked ingest key."),
            413: OpenApiResponse(description="Body larger than INGEST_MAX_BODY_BYTES."),
        },
    )
    def post(self, request, key: IngestKey | None = None) -> HttpResponse:
        key = key or request.auth  # from dispatch, or DRF's authentication
        request = getattr(request, "_request", request)  # DRF's wrapper or Django's request
        limit = max_body_bytes()
        too_large = _json_response(
            {"body": f"at most {limit} bytes per request"},
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
        try:
            raw = read_body(request, limit=limit)
        except BodyTooLarge:
            return too_large
        try:
            items = parse_body(raw)
        except exceptions.ValidationError as exc:
            return _json_response(exc.detail, status=exc.status_code)
        try:
            results = ingest_items(key=key, items=items, check_text=may_hold_unstorable_text(raw))
        except IngestKeyInactive:
            # Revoked, or its account deactivated, since it was read: nothing was written.
            ingest_key_forget(digest=key.digest)
            response = _json_response(
                {"detail": "Invalid or revoked ingest key."},
                status=status.HTTP_401_UNAUTHORIZED,
            )
            response["WWW-Authenticate"] = IngestKeyAuthentication().authenticate_header(request)
            return response
        counts = {"created": 0, "duplicate": 0, "rejected": 0}
        for result in results:
            counts[result.status] += 1
        metrics.ingest_events_counted(provider=key.account.provider.slug, counts=counts)
        body = {
            **counts,
            "results": [
                {
                    "index": r.index,
                    "request_id": r.request_id,
                    "status": r.status,
                    "reason": r.reason,
                }
                for r in results
            ],
        }
        return _json_response(body)
