"""Pages show times in the signed-in user's time zone.

Storage stays UTC, and so do the roll-up's days (templates label those "UTC day"). The API is
left alone: its timestamps are ISO 8601 in UTC ("Z") whoever asks.
"""

from __future__ import annotations

from django.utils import timezone

_UTC_ONLY_PREFIXES = ("/api/", "/proxy/")


class UserTimeZoneMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        if (
            user is not None
            and user.is_authenticated
            and not request.path.startswith(_UTC_ONLY_PREFIXES)
        ):
            timezone.activate(user.zone)
        else:
            timezone.deactivate()
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()
