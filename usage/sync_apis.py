"""JSON API for an account's sync runs: what happened, with a structured error class."""

from __future__ import annotations

from rest_framework import generics, serializers

from providers.selectors import account_get_for_workspace
from usage.models import SyncRun
from usage.services.sync import run_is_stale


class SyncRunSerializer(serializers.ModelSerializer):
    error_class = serializers.ChoiceField(
        choices=[("", "none"), *SyncRun._meta.get_field("error_class").choices],
        help_text="Why the run failed: auth, rate_limited, timeout, server_error, malformed, "
        "network, config, internal or stale (its worker stopped). Empty when it did not fail.",
    )
    error_message = serializers.CharField(
        help_text="First line: a short human message; further lines: details. Never a secret."
    )
    stale = serializers.SerializerMethodField(
        help_text="True for a queued or running run that no worker is going to finish."
    )

    class Meta:
        model = SyncRun
        fields = [
            "id",
            "status",
            "trigger",
            "attempt",
            "window_start",
            "window_end",
            "created_at",
            "started_at",
            "heartbeat_at",
            "finished_at",
            "next_retry_at",
            "fetched",
            "created",
            "updated",
            "error_class",
            "error_message",
            "stale",
        ]
        read_only_fields = fields

    def get_stale(self, run: SyncRun) -> bool:
        return run_is_stale(run)


class SyncRunListApi(generics.ListAPIView):
    """The account's sync runs, newest first."""

    serializer_class = SyncRunSerializer

    def get_queryset(self):
        account = account_get_for_workspace(
            workspace=self.request.membership.workspace, pk=self.kwargs["pk"]
        )
        return account.sync_runs.all()
