"""Reads for users and API tokens."""

from __future__ import annotations

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404

from accounts.models import ApiToken, User


def api_token_list(*, user: User) -> QuerySet[ApiToken]:
    """The user's tokens, newest first (expired ones too, until the daily purge)."""
    return ApiToken.objects.filter(user=user).order_by("-created_at", "-id")


def api_token_get_for_user(*, user: User, pk) -> ApiToken:
    """404 for anyone else's token."""
    return get_object_or_404(api_token_list(user=user), pk=pk)
