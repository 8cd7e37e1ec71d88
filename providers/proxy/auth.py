"""The client's ingest key: `Authorization: Bearer cti_…` (OpenAI SDKs), `x-api-key`, or where
the provider's own clients put theirs (ProviderAdapter.proxy_key_headers / _query_param)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.http import HttpRequest

from providers.key_memory import ingest_key_remembered
from providers.models import IngestKey
from providers.services import ingest_key_mark_used

if TYPE_CHECKING:
    from providers.adapters.base import ProviderAdapter


def presented_key(request: HttpRequest, adapter: type[ProviderAdapter] | None = None) -> str:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    value = request.META.get("HTTP_X_API_KEY", "").strip()
    if value or adapter is None:
        return value
    for name in adapter.proxy_key_headers:
        value = request.META.get("HTTP_" + name.upper().replace("-", "_"), "").strip()
        if value:
            return value
    if adapter.proxy_key_query_param:
        return request.GET.get(adapter.proxy_key_query_param, "").strip()
    return ""


def ingest_key_from_request(
    request: HttpRequest, adapter: type[ProviderAdapter] | None = None
) -> IngestKey | None:
    raw = presented_key(request, adapter)
    if not raw:
        return None
    # Remembered only while this process hears of every key change (never on a timer): a
    # revoked key must not reach the provider.
    key = ingest_key_remembered(raw=raw, fallback_max_age=0)
    if key is not None:
        ingest_key_mark_used(key=key)
    return key
