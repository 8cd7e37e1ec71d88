"""GET /api/ratelimits: each account and model's rate-limit headroom and recent 429s."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from costtracker.api import DecimalStringField
from providers.ratelimits import selectors


class DimensionOutput(serializers.Serializer):
    name = serializers.ChoiceField(choices=list(selectors.LABELS))
    limit = serializers.IntegerField(allow_null=True, help_text="The bucket's size.")
    remaining = serializers.IntegerField(allow_null=True)
    reset_at = serializers.DateTimeField(
        allow_null=True, help_text="When the bucket is full again, as the provider said."
    )
    percent_remaining = DecimalStringField(allow_null=True, help_text="remaining / limit, %.")
    reset_passed = serializers.BooleanField(
        help_text="The reset time has passed: the bucket has refilled since the reading."
    )
    tightest = serializers.BooleanField(help_text="The lowest share left of this model's.")


class DayCountOutput(serializers.Serializer):
    day = serializers.DateField()
    count = serializers.IntegerField()


class RateLimitOutput(serializers.Serializer):
    account = serializers.IntegerField(source="account_id")
    account_name = serializers.CharField()
    provider = serializers.CharField()
    model = serializers.CharField(help_text="Empty for a provider's usage/cost API (sync).")
    observed_at = serializers.DateTimeField(
        allow_null=True, help_text="The provider's latest answer with rate-limit headers."
    )
    stale = serializers.BooleanField(
        help_text="No reading for RATELIMIT_STALE_MINUTES (or none at all)."
    )
    retry_at = serializers.DateTimeField(
        allow_null=True, help_text="Until when the last 429's retry-after asked to wait."
    )
    tightest = serializers.CharField(allow_null=True)
    dimensions = DimensionOutput(many=True)
    rate_limited_by_day = DayCountOutput(
        many=True,
        source="rate_limited_days",
        help_text="429 answers per day (workspace time zone), the last seven days.",
    )
    rate_limited_total = serializers.IntegerField()


class RateLimitFilter(serializers.Serializer):
    account = serializers.IntegerField(required=False, min_value=1, max_value=2**63 - 1)


class RateLimitListApi(APIView):
    """Rate-limit headroom per account and model, as providers last told the proxy, and
    their 429 answers (proxy and sync) over the last seven days. Viewers may read."""

    @extend_schema(parameters=[RateLimitFilter], responses=RateLimitOutput(many=True))
    def get(self, request):
        filters = RateLimitFilter(data=request.query_params)
        filters.is_valid(raise_exception=True)
        rows = selectors.rate_limit_rows(
            workspace=request.membership.workspace,
            account_id=filters.validated_data.get("account"),
        )
        return Response(RateLimitOutput(rows, many=True).data)
