from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, serializers

from accounts.models import Role
from audit.models import AuditEvent
from audit.selectors import audit_events_for


class AuditEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEvent
        fields = [
            "id",
            "created_at",
            "actor",
            "actor_label",
            "workspace",
            "workspace_label",
            "action",
            "object_type",
            "object_id",
            "object_label",
            "changes",
        ]
        read_only_fields = fields


class AuditEventListApi(generics.ListAPIView):
    """The workspace's audit log, newest first (owners and admins): changes to its accounts,
    keys, budgets, channels, members, manual entries and reconciliation (staff: price edits
    too).
    ``changes`` maps each changed field to ``[before, after]``; secrets appear only as
    "set" / "not set"."""

    serializer_class = AuditEventSerializer
    required_roles = {"GET": Role.ADMIN}

    @extend_schema(
        parameters=[
            OpenApiParameter("action", str, enum=AuditEvent.Action.values),
            OpenApiParameter("object_type", str, description="e.g. 'provider account'"),
        ]
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        params = self.request.query_params
        return audit_events_for(
            workspace=self.request.membership.workspace,
            with_shared=self.request.user.is_staff,
            action=params.get("action") or None,
            object_type=params.get("object_type") or None,
        )
