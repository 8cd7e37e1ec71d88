"""Reads of the audit log: every page and API goes through ``audit_events_for``."""

from __future__ import annotations

from django.db.models import QuerySet

from accounts.models import User
from audit.models import AuditEvent


def audit_events_for(
    *, user: User, action: str | None = None, object_type: str | None = None
) -> QuerySet[AuditEvent]:
    """The events ``user`` may read, newest first: those about their own objects; staff and
    superusers read every event (shared data such as prices has no owner).

    The one place this rule lives. Workspaces (issue 12 point 1) will replace it by "events of
    the workspaces where the user is an owner or admin"; nothing else should need to change.
    """
    events = AuditEvent.objects.all()
    if not (user.is_staff or user.is_superuser):
        events = events.filter(owner=user)
    if action:
        events = events.filter(action=action)
    if object_type:
        events = events.filter(object_type=object_type)
    return events.order_by("-created_at", "-id")


def audit_object_types_for(*, user: User) -> list[str]:
    events = audit_events_for(user=user).order_by("object_type")
    return list(events.values_list("object_type", flat=True).distinct())
