"""The client's ingest key: `Authorization: Bearer cti_…` (OpenAI SDKs) or `x-api-key`."""

from __future__ import annotations

from django.http import HttpRequest

from providers.key_memory import ingest_key_remembered
from providers.models import IngestKey
from providers.services import ingest_key_mark_used


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
        ingest_key_mark_used(key=key)
    return key
