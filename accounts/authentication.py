from __future__ import annotations

from django.utils import timezone
from rest_framework import authentication, exceptions

from accounts.models import ApiToken, hash_token


class BearerTokenAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer ctk_…` personal API tokens, stored hashed, with an expiry.

    Ingest keys (cti_…) are not API tokens: they are handled by the ingestion endpoints
    alone and give no read access, so they are ignored here.
    """

    keyword = "bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1").split()
        if len(header) != 2 or header[0].lower() != self.keyword:
            return None
        raw = header[1]
        if not raw.startswith(ApiToken.PREFIX):
            return None
        token = ApiToken.objects.select_related("user").filter(digest=hash_token(raw)).first()
        if token is None or token.is_expired or not token.user.is_active:
            raise exceptions.AuthenticationFailed("Invalid or expired token.")
        now = timezone.now()
        # Write at most once a minute: last_used is informational and must not cost a write
        # on every request.
        if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        return (token.user, token)

    def authenticate_header(self, request):
        return 'Bearer realm="api"'
