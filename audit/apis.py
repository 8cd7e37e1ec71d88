from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, serializers

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
            "owner",
            "owner_label",
            "action",
            "object_type",
            "object_id",
            "object_label",
            "changes",
        ]
        read_only_fields = fields


class AuditEventListApi(generics.ListAPIView):
    """The audit log you may read, newest first: changes to your own accounts, keys, budgets,
    channels, manual entries and reconciliation (staff: every event, prices included).
    ``changes`` maps each changed field to ``[before, after]``; secrets appear only as
    "set" / "not set"."""

    serializer_class = AuditEventSerializer

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
            user=self.request.user,
            action=params.get("action") or None,
            object_type=params.get("object_type") or None,
        )
