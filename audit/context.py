"""Who is acting: the request's user, remembered for the length of one request.

The middleware keeps the request (not its user) so that a DRF token login, which happens in the
view after every middleware has run, is still seen: DRF copies its user onto the request.
Outside a request (commands, tasks) the actor is the system.
"""

from __future__ import annotations

from contextvars import ContextVar

_request: ContextVar = ContextVar("audit_request", default=None)


def current_user():
    request = _request.get()
    user = getattr(request, "user", None)
    return user if user is not None and user.is_authenticated else None


class AuditActorMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        token = _request.set(request)
        try:
            return self.get_response(request)
        finally:
            _request.reset(token)
