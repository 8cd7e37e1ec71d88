"""Login throttling (django-axes): what a locked-out login gets, and what a good one clears.

A locked-out login gets JSON for the API, a page for the browser (HTTP 429 both). A successful
login clears the failures counted for its username + address — on every path, through one rule:
`login_succeeded` sends Django's `user_logged_in`, the signal `django.contrib.auth.login` sends
for the web login, and django-axes' handler for that signal resets the counter
(`AXES_RESET_ON_SUCCESS`).
"""

from __future__ import annotations

from django.contrib.auth.signals import user_logged_in
from django.http import JsonResponse
from django.shortcuts import render


def lockout_response(request, original_response=None, credentials=None):
    if request.path.startswith("/api/"):
        return JsonResponse(
            {"detail": "Too many failed logins. Try again in 15 minutes."}, status=429
        )
    return render(request, "registration/locked_out.html", status=429)


def login_succeeded(*, request, user) -> None:
    """Record a successful login that did not go through `django.contrib.auth.login`.

    The token login (`POST /api/auth/login`) opens no session, so it never calls `login()`;
    without this its success left earlier failures counting towards the lock.
    """
    user_logged_in.send(sender=user.__class__, request=request, user=user)
