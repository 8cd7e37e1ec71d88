from __future__ import annotations

from django.contrib import admin
from django.db import transaction

from audit.models import AuditEvent
from audit.services import (
    audit_changes,
    audit_record,
    audit_snapshot,
    audit_state,
    audit_update_action,
)


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """Read-only: the log is append-only."""

    list_display = [
        "created_at",
        "actor_label",
        "workspace_label",
        "action",
        "object_type",
        "object_label",
    ]
    list_filter = ["action", "object_type"]
    search_fields = ["actor_label", "workspace_label", "object_label"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def _actor(request):
    user = getattr(request, "user", None)
    return user if user is not None and user.is_authenticated else None


class AuditedAdminMixin:
    """Logs every add, change and delete made in a model's admin, one event each, in the same
    transaction as the write (the admin wraps each view in one)."""

    def save_model(self, request, obj, form, change):
        before = None
        if change and obj.pk is not None:
            stored = type(obj)._default_manager.filter(pk=obj.pk).first()
            before = audit_state(stored) if stored is not None else None
        super().save_model(request, obj, form, change)
        changes = audit_changes(before, obj)
        audit_record(
            action=audit_update_action(changes) if change else AuditEvent.Action.CREATED,
            obj=obj,
            changes=changes,
            actor=_actor(request),
        )

    def delete_model(self, request, obj):
        with transaction.atomic():
            audit_record(
                action=AuditEvent.Action.DELETED,
                obj=obj,
                before=audit_snapshot(obj),
                actor=_actor(request),
            )
            super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        with transaction.atomic():
            for obj in queryset:
                audit_record(
                    action=AuditEvent.Action.DELETED,
                    obj=obj,
                    before=audit_snapshot(obj),
                    actor=_actor(request),
                )
            super().delete_queryset(request, queryset)
