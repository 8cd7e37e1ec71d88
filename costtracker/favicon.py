"""`/favicon.ico`, which browsers and tools ask for whatever the page links: the SVG icon."""

from __future__ import annotations

from django.http import HttpResponseRedirect
from django.templatetags.static import static
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_safe


@require_safe
@cache_control(max_age=86400, public=True)
def favicon(request):
    # A temporary redirect: the static name carries a content hash that changes with the icon.
    return HttpResponseRedirect(static("favicon.svg"))
