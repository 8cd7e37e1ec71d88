from __future__ import annotations

from django.core.paginator import Paginator
from django.shortcuts import render

from accounts.access import role_required
from accounts.models import Role
from audit.models import AuditEvent
from audit.selectors import audit_events_for, audit_object_types_for


@role_required(Role.ADMIN)
def audit_log(request):
    action = request.GET.get("action") or None
    object_type = request.GET.get("object_type") or None
    scope = {"workspace": request.membership.workspace, "with_shared": request.user.is_staff}
    events = audit_events_for(**scope, action=action, object_type=object_type)
    page = Paginator(events, 50).get_page(request.GET.get("page"))
    context = {
        "page": page,
        "actions": AuditEvent.Action.choices,
        "object_types": audit_object_types_for(**scope),
        "action": action or "",
        "object_type": object_type or "",
    }
    return render(request, "audit/audit_log.html", context)
