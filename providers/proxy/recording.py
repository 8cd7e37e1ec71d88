"""One proxied call -> one RequestEvent, written through request_events_record.

A call always leaves a record: ok (usage known), failed (the provider refused: cost 0), or
incomplete (cut short: whatever usage is known, and cost NULL when none is).
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime

from django.conf import settings

from providers.models import ProviderAccount
from usage.extraction import RequestUsage
from usage.services.prices import PriceBook, shared_price_book
from usage.services.requests import RequestEvent, request_events_record

logger = logging.getLogger(__name__)

TAG_HEADERS = {
    "project": "HTTP_X_TRACKER_PROJECT",
    "user": "HTTP_X_TRACKER_USER",
    "feature": "HTTP_X_TRACKER_FEATURE",
}
TAG_MAX = 200


def tags_from(meta: dict) -> dict[str, str]:
    tags = {}
    for tag, header in TAG_HEADERS.items():
        value = meta.get(header, "").strip()
        if value:
            tags[tag] = value[:TAG_MAX]
    return tags


def _write(account: ProviderAccount, event: RequestEvent, book: PriceBook) -> None:
    request_events_record(
        account=account, events=[event], book=book, durable=settings.PROXY_DURABLE_COMMIT
    )


def proxy_call_record(
    *,
    account: ProviderAccount,
    usage: RequestUsage,
    status: str,
    occurred_at: datetime,
    tags: dict[str, str],
    fallback_model: str = "",
    raw_usage: dict | None = None,
) -> str:
    """Record one proxied call and return its request id. Never raises: the client's response
    must not fail because bookkeeping did (the failure is logged, without secrets)."""
    request_id = usage.response_id or f"proxy-{uuid.uuid4()}"
    usage.model = usage.model or fallback_model
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
        _write(account, event, book)
    except Exception:
        logger.exception(
            "proxy: could not record request %s for account %s", request_id, account.pk
        )
    return request_id
