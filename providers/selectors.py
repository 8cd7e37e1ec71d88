"""Reads for providers and accounts. Every query from a request is scoped to its user."""

from __future__ import annotations

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404

from accounts.models import User
from providers.models import IngestKey, Provider, ProviderAccount, hash_ingest_key


def provider_list() -> QuerySet[Provider]:
    return Provider.objects.all()


def account_list(*, user: User) -> QuerySet[ProviderAccount]:
    return ProviderAccount.objects.filter(owner=user).select_related("provider")


def account_get_for_user(*, user: User, pk) -> ProviderAccount:
    """404 for anyone else's account: never reveal that the id exists."""
    return get_object_or_404(account_list(user=user), pk=pk)


def ingest_key_lookup(*, raw: str) -> IngestKey | None:
    """The active ingest key matching a plaintext key, or None."""
    if not raw.startswith(IngestKey.PREFIX):
        return None
    return (
        IngestKey.objects.select_related("account__provider", "account__owner")
        .filter(digest=hash_ingest_key(raw), revoked_at__isnull=True, account__is_active=True)
        .first()
    )
