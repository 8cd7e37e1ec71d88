"""Reads of the audit log: every page and API goes through ``audit_events_for``."""

from __future__ import annotations

from django.db.models import Q, QuerySet

from accounts.models import Workspace
from audit.models import AuditEvent


def audit_events_for(
    *,
    workspace: Workspace,
    with_shared: bool = False,
    action: str | None = None,
    object_type: str | None = None,
) -> QuerySet[AuditEvent]:
    """The workspace's events, newest first; `with_shared` adds the events about data no
    workspace owns (prices), for staff. Who may read them at all (a workspace's owners and
    admins) is the route's role (accounts.access)."""
    scope = Q(workspace=workspace)
    if with_shared:
        scope |= Q(workspace__isnull=True)
    events = AuditEvent.objects.filter(scope)
    if action:
        events = events.filter(action=action)
    if object_type:
        events = events.filter(object_type=object_type)
    return events.order_by("-created_at", "-id")


def audit_object_types_for(*, workspace: Workspace, with_shared: bool = False) -> list[str]:
    events = audit_events_for(workspace=workspace, with_shared=with_shared).order_by("object_type")
    return list(events.values_list("object_type", flat=True).distinct())
