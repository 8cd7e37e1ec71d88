"""The client's ingest key: `Authorization: Bearer cti_…` (OpenAI SDKs) or `x-api-key`."""

from __future__ import annotations

from datetime import timedelta

from django.http import HttpRequest
from django.utils import timezone

from providers.key_memory import ingest_key_remembered
from providers.models import IngestKey

# last_used_at is a hint for the keys page, not an audit log: one UPDATE a minute per key at
# most keeps the hot path at a single SELECT.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def presented_key(request: HttpRequest) -> str:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.META.get("HTTP_X_API_KEY", "").strip()


def ingest_key_from_request(request: HttpRequest) -> IngestKey | None:
    raw = presented_key(request)
    if not raw:
        return None
    # Remembered only while this process hears of every key change (never on a timer): a
    # revoked key must not reach the provider.
    key = ingest_key_remembered(raw=raw, fallback_max_age=0)
    if key is not None:
        now = timezone.now()
        if key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION:
            IngestKey.objects.filter(pk=key.pk).update(last_used_at=now)
            key.last_used_at = now
    return key
