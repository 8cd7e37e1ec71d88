"""GET /api/usage/breakdown: spend per provider, account, model, tag, ingest key or member.

Thin: validate the query string (a 400 names the field), call usage.breakdown.spend_breakdown,
shape the answer. Money leaves as strings in the one API format (costtracker.api.MoneyField).
"""

from __future__ import annotations

from datetime import date, timedelta

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from costtracker.api import MoneyField
from usage import selectors
from usage.breakdown import GROUP_BY_CHOICES, MAX_BREAKDOWN_DAYS, spend_breakdown
from usage.insight_apis import DAYS_NOTE, RAW_HISTORY_HEADER_DOC, raw_history_field
from usage.raw_history import raw_history_header, raw_history_notice

UNTAGGED_NOTE = (
    "Official figures and manual entries carry no tags and no ingest key: grouped by project, "
    "user, feature, ingest key or member they count under '(untagged)' or '(no key)'."
)


class BreakdownApi(APIView):
    """Spend of a range of UTC days per group, with each group's cost per day.

    Every group-by adds up to the same total as the dashboard's for the range (official
    figures supersede estimates of the same account and day).
    """

    class InputSerializer(serializers.Serializer):
        group_by = serializers.ChoiceField(
            choices=GROUP_BY_CHOICES,
            help_text="provider, account and model read the daily roll-up; project, user and "
            "feature (the X-Tracker-* tags), ingest_key and member (the key's creator) read the "
            "attribution roll-up.",
        )
        start = serializers.DateField(
            required=False, help_text="UTC day, inclusive; default: the 1st of your month."
        )
        end = serializers.DateField(
            required=False,
            help_text="UTC day, inclusive; default: today (the workspace's time zone).",
        )

        def __init__(self, *args, workspace=None, **kwargs):
            super().__init__(*args, **kwargs)
            self.workspace = workspace

        def validate(self, attrs):
            today = selectors.today_for(self.workspace)
            attrs.setdefault("start", today.replace(day=1))
            attrs.setdefault("end", today)
            if attrs["end"] >= date.max:
                raise serializers.ValidationError({"end": "Must be before 9999-12-31."})
            if attrs["start"] > attrs["end"]:
                raise serializers.ValidationError({"end": "Must not be before start."})
            if (attrs["end"] - attrs["start"]).days + 1 > MAX_BREAKDOWN_DAYS:
                raise serializers.ValidationError(
                    {"end": f"At most {MAX_BREAKDOWN_DAYS} days at a time."}
                )
            return attrs

    class OutputSerializer(serializers.Serializer):
        class GroupOutput(serializers.Serializer):
            class DayOutput(serializers.Serializer):
                date = serializers.DateField(help_text="UTC day.")
                cost = MoneyField()

                class Meta:
                    ref_name = "UsageBreakdownDay"

            key = serializers.CharField(
                allow_blank=True,
                help_text="Stable id of the group: a provider slug, an account or key id, "
                "'<provider>/<model>', the tag value ('' = untagged), a member's user id "
                "('' = no key, 'unknown' = a key without a recorded creator); key 0 = no key.",
            )
            label = serializers.CharField()
            detail = serializers.CharField(
                allow_blank=True, help_text="The provider of a model or account, a key's account."
            )
            cost = MoneyField(help_text="Priced usage only; unpriced requests are counted apart.")
            unpriced_count = serializers.IntegerField()
            requests = serializers.IntegerField()
            tokens = serializers.IntegerField()
            daily = DayOutput(
                many=True,
                source="series",
                help_text="Days with usage in this group, oldest first; a missing day is 0.",
            )

            class Meta:
                ref_name = "UsageBreakdownGroup"

        group_by = serializers.CharField()
        start = serializers.DateField()
        end = serializers.DateField(help_text="Inclusive.")
        total_cost = MoneyField()
        unpriced_count = serializers.IntegerField()
        requests = serializers.IntegerField()
        tokens = serializers.IntegerField()
        groups = GroupOutput(many=True, help_text="Costliest first.")
        raw_history_start = raw_history_field()
        note = serializers.CharField()

        class Meta:
            ref_name = "UsageBreakdown"

    @extend_schema(parameters=[InputSerializer, RAW_HISTORY_HEADER_DOC], responses=OutputSerializer)
    def get(self, request):
        query = self.InputSerializer(
            data=request.query_params, workspace=request.membership.workspace
        )
        query.is_valid(raise_exception=True)
        f = query.validated_data
        breakdown = spend_breakdown(
            workspace=request.membership.workspace,
            group_by=f["group_by"],
            start=f["start"],
            end=f["end"] + timedelta(days=1),
        )
        notice = raw_history_notice(start=f["start"])
        body = {
            "group_by": breakdown.group_by,
            "start": f["start"],
            "end": f["end"],
            "total_cost": breakdown.total,
            "unpriced_count": breakdown.unpriced_count,
            "requests": breakdown.requests,
            "tokens": breakdown.tokens,
            "groups": breakdown.groups,
            "raw_history_start": notice.first_kept if notice else None,
            "note": f"{UNTAGGED_NOTE} {DAYS_NOTE}",
        }
        return raw_history_header(Response(self.OutputSerializer(body).data), notice)
