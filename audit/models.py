"""The audit log: one append-only row per change a person (or the system) made."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class AuditError(Exception):
    """Raised on any attempt to change or delete an audit event."""


class AuditEventQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise AuditError("The audit log is append-only.")

    def delete(self):
        raise AuditError("The audit log is append-only.")


class AuditEvent(models.Model):
    class Action(models.TextChoices):
        CREATED = "created", "Created"
        UPDATED = "updated", "Updated"
        DELETED = "deleted", "Deleted"
        DEACTIVATED = "deactivated", "Deactivated"
        REACTIVATED = "reactivated", "Reactivated"
        KEY_CHANGED = "key_changed", "Key changed"
        REVOKED = "revoked", "Revoked"
        IMPORTED = "imported", "Imported"
        BOOKED = "booked", "Booked"

    # The actor and the workspace are kept as text as well: deleting either nulls the key, not
    # the story.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_label = models.CharField(max_length=150)
    workspace = models.ForeignKey(
        "accounts.Workspace",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The workspace whose data changed; empty for shared data such as prices.",
    )
    workspace_label = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=16, choices=Action.choices)
    object_type = models.CharField(max_length=40)
    object_id = models.CharField(max_length=40, blank=True)
    object_label = models.CharField(max_length=255, blank=True)
    changes = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["workspace", "-created_at"], name="audit_workspace_created")
        ]

    def __str__(self) -> str:
        return f"{self.actor_label} {self.action} {self.object_type} {self.object_label}"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise AuditError("The audit log is append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AuditError("The audit log is append-only.")
