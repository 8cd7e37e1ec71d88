"""WSGI entry point.

Machine traffic authenticated by ingest keys — proxied calls (`/proxy/…`), event ingestion
(`/api/usage/events`) and OpenTelemetry exports (`/v1/traces`) — goes through a handler with
only the security and host checks: it needs no sessions, CSRF, messages or login throttling,
and on these hot paths every skipped middleware is latency the client pays. Everything else
gets the full stack.
"""

import os

from django.core.handlers.wsgi import WSGIHandler
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "costtracker.settings")

INGEST_KEY_PATHS = ("/proxy/", "/api/usage/events", "/v1/traces")
INGEST_KEY_MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",  # ALLOWED_HOSTS is checked here
]


class IngestKeyWSGIHandler(WSGIHandler):
    def load_middleware(self, is_async=False):
        from django.conf import settings

        full = settings.MIDDLEWARE
        settings.MIDDLEWARE = INGEST_KEY_MIDDLEWARE
        try:
            super().load_middleware(is_async)
        finally:
            settings.MIDDLEWARE = full


_site = get_wsgi_application()
_machine = IngestKeyWSGIHandler()


def application(environ, start_response):
    handler = _machine if environ.get("PATH_INFO", "").startswith(INGEST_KEY_PATHS) else _site
    return handler(environ, start_response)
