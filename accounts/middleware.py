"""The workspace a request acts in (accounts.access), and pages shown in its time zone.

Storage stays UTC, and so do the roll-up's days (templates label those "UTC day"). The API is
left alone: its timestamps are ISO 8601 in UTC ("Z") whoever asks.
"""

from __future__ import annotations

from django.utils import timezone
from django.utils.functional import SimpleLazyObject

from accounts.access import membership_for_request

_UTC_ONLY_PREFIXES = ("/api/", "/proxy/")


class WorkspaceMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        # Lazy: resolved on first use, after DRF has authenticated an API token's user (DRF
        # sets the user on this request too); ingestion and the proxy never touch it.
        request.membership = SimpleLazyObject(lambda: membership_for_request(request))
        user = getattr(request, "user", None)
        if (
            user is not None
            and user.is_authenticated
            and not request.path.startswith(_UTC_ONLY_PREFIXES)
        ):
            timezone.activate(request.membership.workspace.zone)
        else:
            timezone.deactivate()
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()
