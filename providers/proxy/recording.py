"""One proxied call -> one RequestEvent, written through request_events_record.

A call always leaves a record: ok (usage known), failed (the provider refused: cost 0), or
incomplete (cut short: whatever usage is known, and cost NULL when none is).
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime

from django.conf import settings

from costtracker import metrics
from providers.models import ProviderAccount
from usage import bounds
from usage.extraction import RequestUsage
from usage.models import RecordStatus
from usage.services.prices import PriceBook, shared_price_book
from usage.services.requests import RequestEvent, request_events_record
from usage.services.tag_values import tag_values_problem, tag_values_refused

logger = logging.getLogger(__name__)

# X-Tracker-Project, X-Tracker-User, X-Tracker-Feature (as WSGI names them).
TAG_HEADERS = {tag: f"HTTP_X_TRACKER_{tag.upper()}" for tag in bounds.TAG_KEYS}
ID_MAX = 200  # UsageRecord.request_id and .model


def _storable(text: str) -> str:
    """Text a database column takes: printable (no NUL, no lone surrogate), cut to fit."""
    if not isinstance(text, str):
        return ""
    if not text.isprintable():
        text = "".join(ch for ch in text if ch.isprintable())
    return text[:ID_MAX]


def _within_bounds(usage: RequestUsage, status: str, raw_usage):
    """The usage to record: as reported, or, with a figure outside the input bounds
    (usage/bounds.py), none at all: the call is recorded as incomplete and unpriced, with the
    reason kept in raw, rather than refused (which would leave the call without a record)."""
    try:
        bounds.values_check(usage, bounds=bounds.REQUEST, prefix="usage.")
    except bounds.OutOfBounds as exc:
        logger.warning("proxy: %s; recorded unpriced", exc)
        empty = RequestUsage(model=usage.model, response_id=usage.response_id)
        return empty, RecordStatus.INCOMPLETE, {"out_of_bounds": str(exc)}
    return usage, status, raw_usage


class TagError(ValueError):
    """A tag header the proxy refuses (the message names the header)."""


def tags_from(meta: dict) -> dict[str, str]:
    """The request's tags; TagError for a value too long or holding control characters,
    which is refused rather than cut short or stored garbled."""
    tags = {}
    for tag, header in TAG_HEADERS.items():
        value = meta.get(header, "").strip()
        if not value:
            continue
        if problem := bounds.tag_problem(value):
            raise TagError(f"X-Tracker-{tag.title()}: {problem}")
        tags[tag] = value
    return tags


def tags_admit(*, account: ProviderAccount, tags: dict[str, str], at: datetime) -> None:
    """TagError, naming the header, for a tag value past the bound on distinct values a day
    (usage.bounds.TAG_MAX_VALUES): refused before the call is made, like a value too long."""
    if not tags:
        return
    refused = tag_values_refused(account_id=account.pk, tagged=[(at.astimezone(UTC).date(), tags)])
    for tag in refused.values():
        raise TagError(f"X-Tracker-{tag.title()}: {tag_values_problem(tag)}")


def _write(
    account: ProviderAccount,
    event: RequestEvent,
    book: PriceBook,
    ingest_key_id: int | None,
    budget_periods: list,
) -> None:
    request_events_record(
        account=account,
        events=[event],
        book=book,
        ingest_key_id=ingest_key_id,
        # The key was active when the call went out; the provider bills it whatever happened
        # to the key since, so the call is recorded either way.
        key_must_be_active=False,
        durable=settings.PROXY_DURABLE_COMMIT,
        budget_periods=budget_periods,  # counted against them in the same statement
    )


@metrics.timed_proxy_record
def proxy_call_record(
    *,
    account: ProviderAccount,
    usage: RequestUsage,
    status: str,
    occurred_at: datetime,
    tags: dict[str, str],
    ingest_key_id: int | None = None,
    fallback_model: str = "",
    raw_usage: dict | None = None,
    budget_periods: list | None = None,
) -> str:
    """Record one proxied call (made with the ingest key `ingest_key_id`) and return its
    request id; its cost is added to `budget_periods` (the enforced budgets its check
    covered). Never raises: the client's response must not fail because bookkeeping did (the
    failure is logged, without secrets)."""
    usage.response_id = _storable(usage.response_id)
    request_id = usage.response_id or f"proxy-{uuid.uuid4()}"
    usage.model = _storable(usage.model or fallback_model)
    usage, status, raw_usage = _within_bounds(usage, status, raw_usage)
    book = shared_price_book()
    event = RequestEvent(
        request_id=request_id,
        usage=usage,
        occurred_at=occurred_at,
        status=status,
        tags=tags,
        raw_usage=raw_usage,  # Decimals and all: the writers store them as exact strings
    )
    try:
        _write(account, event, book, ingest_key_id, budget_periods or [])
    except Exception:
        logger.exception(
            "proxy: could not record request %s for account %s", request_id, account.pk
        )
    return request_id
