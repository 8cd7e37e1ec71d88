"""Django's error views (handler400/403/404/500) for the whole site.

Pages get the app's layout (templates/404.html, 500.html). Under /api/ the answer is JSON
({"detail": ...}) and under /proxy/ it is shaped like a provider's error, so SDKs and scripts
never have to parse an HTML page. A 500 says nothing about what broke: the traceback goes to
the server log (Django logs it before calling handler500), never to the client.
"""

from __future__ import annotations

import logging

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template import loader

logger = logging.getLogger(__name__)

API_PREFIX = "/api/"
PROXY_PREFIX = "/proxy/"

_MESSAGES = {
    400: "Bad request.",
    403: "You do not have permission to perform this action.",
    404: "Not found.",
    500: "Server error.",
}
# The proxy answers in the shape both OpenAI's and Anthropic's SDKs read (see proxy/views.py).
_PROXY_KINDS = {
    400: "invalid_request_error",
    403: "permission_error",
    404: "not_found_error",
    500: "api_error",
}
_FALLBACK_500 = (
    "<!doctype html><html lang=en><meta charset=utf-8><title>Server error</title>"
    "<h1>Server error</h1><p>Something went wrong on our side. It has been logged; "
    "please try again, or go back to the <a href='/'>dashboard</a>.</p></html>"
)


def _path(request: HttpRequest) -> str:
    try:
        return request.path
    except Exception:  # a request too broken to have a path still gets an answer
        return ""


def _machine_answer(request: HttpRequest, status: int) -> HttpResponse | None:
    """JSON for /api/ and /proxy/; None for pages."""
    path = _path(request)
    if path.startswith(API_PREFIX):
        return JsonResponse({"detail": _MESSAGES[status]}, status=status)
    if path.startswith(PROXY_PREFIX):
        from providers.proxy.views import proxy_error

        return proxy_error(status, _PROXY_KINDS[status], _MESSAGES[status])
    return None


def _page(request: HttpRequest, status: int, title: str, message: str) -> HttpResponse:
    template = loader.get_template(f"{status}.html" if status == 404 else "error.html")
    context = {"status": status, "title": title, "message": message}
    return HttpResponse(template.render(context, request), status=status)


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    answer = _machine_answer(request, 400)
    if answer is not None:
        return answer
    return _page(
        request, 400, "Bad request", "The request could not be understood. Please check it."
    )


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    answer = _machine_answer(request, 403)
    if answer is not None:
        return answer
    return _page(request, 403, "Forbidden", "You do not have access to this page.")


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    answer = _machine_answer(request, 404)
    if answer is not None:
        return answer
    return _page(request, 404, "Page not found", "There is nothing at this address.")


def server_error(request: HttpRequest) -> HttpResponse:
    """Must answer whatever state the request is in: no request context (no user, no session,
    no database), and a plain fallback if even the template cannot be rendered."""
    try:
        answer = _machine_answer(request, 500)
        if answer is not None:
            return answer
        return HttpResponse(loader.get_template("500.html").render(), status=500)
    except Exception:
        logger.exception("the 500 page itself failed to render")
        return HttpResponse(_FALLBACK_500, status=500, content_type="text/html; charset=utf-8")
