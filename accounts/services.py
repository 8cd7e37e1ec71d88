"""Writes for users and API tokens."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.db import transaction
from django.utils import timezone

from accounts.models import ApiToken, User, hash_token


@transaction.atomic
def user_create(*, username: str, password: str, email: str = "") -> User:
    user = User(username=username, email=email)
    validate_password(password, user)
    user.set_password(password)
    user.full_clean(exclude=["password"])
    user.save()
    return user


def api_token_create(*, user: User, name: str = "") -> tuple[str, ApiToken]:
    """Returns the plaintext token (shown once) and the stored, hashed row.

    The one way tokens are made: POST /api/auth/login and the tokens page both call it.
    """
    raw = ApiToken.new_raw_token()
    token = ApiToken.objects.create(
        user=user,
        name=name.strip()[:100],
        digest=hash_token(raw),
        hint=raw[:10],
        expires_at=timezone.now() + settings.API_TOKEN_TTL,
    )
    return raw, token


def api_token_revoke(*, token: ApiToken) -> None:
    token.delete()


def api_tokens_purge_expired(*, now: datetime | None = None) -> int:
    deleted, _ = ApiToken.objects.filter(expires_at__lte=now or timezone.now()).delete()
    return deleted
