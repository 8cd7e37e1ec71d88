"""WSGI entry point.

Proxied calls (`/proxy/…`) go through a handler with only the security and host checks: the
proxy authenticates with ingest keys and needs no sessions, CSRF, messages or login
throttling, and on its hot path every skipped middleware is latency the client does not pay.
Everything else gets the full stack.
"""

import os

from django.core.handlers.wsgi import WSGIHandler
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "costtracker.settings")

PROXY_PREFIX = "/proxy/"
PROXY_MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",  # ALLOWED_HOSTS is checked here
]


class ProxyWSGIHandler(WSGIHandler):
    def load_middleware(self, is_async=False):
        from django.conf import settings

        full = settings.MIDDLEWARE
        settings.MIDDLEWARE = PROXY_MIDDLEWARE
        try:
            super().load_middleware(is_async)
        finally:
            settings.MIDDLEWARE = full


_site = get_wsgi_application()
_proxy = ProxyWSGIHandler()


def application(environ, start_response):
    handler = _proxy if environ.get("PATH_INFO", "").startswith(PROXY_PREFIX) else _site
    return handler(environ, start_response)
