from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.shortcuts import render

from audit.models import AuditEvent
from audit.selectors import audit_events_for, audit_object_types_for


@login_required
def audit_log(request):
    action = request.GET.get("action") or None
    object_type = request.GET.get("object_type") or None
    events = audit_events_for(user=request.user, action=action, object_type=object_type)
    page = Paginator(events, 50).get_page(request.GET.get("page"))
    context = {
        "page": page,
        "actions": AuditEvent.Action.choices,
        "object_types": audit_object_types_for(user=request.user),
        "action": action or "",
        "object_type": object_type or "",
    }
    return render(request, "audit/audit_log.html", context)
