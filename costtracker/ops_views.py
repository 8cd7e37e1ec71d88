"""/healthz, /readyz and /metrics: for load balancers, orchestrators and Prometheus.

None of them needs a session or a workspace. /metrics is off unless METRICS_ENABLED, and then
needs METRICS_TOKEN as a Bearer token, or, without a token set, a direct loopback request.
"""

from __future__ import annotations

import hmac
import ipaddress

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from costtracker import health, metrics

# Set by a reverse proxy: the request came from further away than REMOTE_ADDR says.
FORWARDED_HEADERS = ("HTTP_FORWARDED", "HTTP_X_FORWARDED_FOR", "HTTP_X_REAL_IP")


@require_safe
@never_cache
def healthz(request: HttpRequest) -> HttpResponse:
    """The process answers: no database, no checks."""
    return HttpResponse(b"ok\n", content_type="text/plain")


@require_safe
@never_cache
def readyz(request: HttpRequest) -> JsonResponse:
    checks = health.readiness()
    failed = [name for name, result in checks.items() if result != health.OK]
    if failed:
        return JsonResponse(
            {"status": "unavailable", "failed": failed, "checks": checks}, status=503
        )
    return JsonResponse({"status": "ready", "checks": checks})


def _loopback(request: HttpRequest) -> bool:
    if any(request.META.get(h) for h in FORWARDED_HEADERS):
        return False
    try:
        return ipaddress.ip_address(request.META.get("REMOTE_ADDR", "")).is_loopback
    except ValueError:
        return False


def _refusal(request: HttpRequest) -> HttpResponse | None:
    token = settings.METRICS_TOKEN
    if not token:
        if _loopback(request):
            return None
        return HttpResponse(b"Metrics are served to loopback only.\n", status=403)
    scheme, _, presented = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        response = HttpResponse(b"A Bearer token is required.\n", status=401)
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    if not hmac.compare_digest(presented.strip().encode(), token.encode()):
        return HttpResponse(b"Wrong token.\n", status=403)
    return None


@require_safe
@never_cache
def metrics_view(request: HttpRequest) -> HttpResponse:
    if not settings.METRICS_ENABLED:
        raise Http404
    refusal = _refusal(request)
    if refusal is not None:
        refusal["Content-Type"] = "text/plain"
        return refusal
    return HttpResponse(metrics.exposition(), content_type=metrics.CONTENT_TYPE)
