"""JSON API for usage: month summary, history, by service, daily series, manual entries."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from providers.models import ProviderAccount
from usage import bounds, selectors
from usage.db import WIDE, money_str
from usage.models import TOKEN_FIELDS, UNIT_FIELDS, Source, UsageRecord
from usage.services.records import manual_entry_create

MONEY = {"max_digits": 28, "decimal_places": 12}
EARLIEST = date(2000, 1, 1)


class StoredMoneyField(serializers.DecimalField):
    """Money read back, to the column's places, whatever was stored: a value from before the
    input bounds (usage/bounds.py) may have more digits than max_digits allows."""

    def quantize(self, value):
        if not value.is_finite():
            return value
        return value.quantize(Decimal(1).scaleb(-self.decimal_places), context=WIDE)


class UsageRecordSerializer(serializers.ModelSerializer):
    provider = serializers.CharField(source="provider.slug")
    account_name = serializers.CharField(source="account.name")
    cost = StoredMoneyField(**MONEY, allow_null=True, read_only=True)

    class Meta:
        model = UsageRecord
        fields = [
            "id",
            "account",
            "account_name",
            "provider",
            "model",
            "line_item",
            "description",
            "request_id",
            "bucket_start",
            "granularity",
            *TOKEN_FIELDS,
            *UNIT_FIELDS,
            "cost",
            "currency",
            "source",
            "status",
            "tags",
            "created_at",
        ]


class UsageSummaryApi(APIView):
    """Current month (in the user's time zone) per account."""

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request):
        today = selectors.today_for(request.user)
        first, next_first = selectors.month_bounds(today)
        items = selectors.month_summary(user=request.user, today=today)
        accounts = [
            {
                "account": i.account.pk,
                "account_name": i.account.name,
                "provider": i.account.provider.slug,
                "cost": money_str(i.cost),
                "tokens": i.tokens,
                "requests": i.requests,
                "unpriced_count": i.unpriced_count,
                "sources": sorted(i.sources),
                "monthly_budget": None
                if i.account.monthly_budget is None
                else str(i.account.monthly_budget),
                "budget_pct": None if i.budget_pct is None else str(i.budget_pct),
                "status": i.status,
            }
            for i in items
        ]
        by_provider: dict[str, dict] = {}
        for i in items:
            p = by_provider.setdefault(i.account.provider.slug, {"cost": Decimal(0), "tokens": 0})
            p["cost"] += i.cost
            p["tokens"] += i.tokens
        return Response(
            {
                "period": {"start": first, "end": next_first - timedelta(days=1)},
                "time_zone": request.user.time_zone,
                "total_cost": money_str(sum((i.cost for i in items), Decimal(0))),
                "accounts": accounts,
                "providers": [
                    {"provider": k, "cost": money_str(v["cost"]), "tokens": v["tokens"]}
                    for k, v in sorted(by_provider.items())
                ],
            }
        )


class HistoryFilterSerializer(serializers.Serializer):
    provider = serializers.CharField(required=False)
    account = serializers.IntegerField(required=False, min_value=1)
    model = serializers.CharField(required=False, max_length=200)
    source = serializers.ChoiceField(choices=Source.choices, required=False)
    start = serializers.DateField(required=False, help_text="UTC day, inclusive.")
    end = serializers.DateField(required=False, help_text="UTC day, inclusive.")

    def validate(self, attrs):
        if attrs.get("start") and attrs.get("end") and attrs["start"] > attrs["end"]:
            raise serializers.ValidationError({"end": "Must not be before start."})
        return attrs


@extend_schema(parameters=[HistoryFilterSerializer])
class UsageHistoryApi(generics.ListAPIView):
    serializer_class = UsageRecordSerializer

    def get_queryset(self):
        filters = HistoryFilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        f = filters.validated_data
        return selectors.usage_history(
            user=self.request.user,
            provider=f.get("provider"),
            account_id=f.get("account"),
            model=f.get("model"),
            source=f.get("source"),
            start=f.get("start"),
            end=f.get("end"),
        )


class UsageByServiceApi(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("days", int, description="Default: this month")],
        responses=OpenApiTypes.OBJECT,
    )
    def get(self, request):
        start, end = _period(request)
        rows = selectors.spend_by_provider(user=request.user, start=start, end=end)
        return Response(
            {
                "start": start,
                "end": end - timedelta(days=1),
                "services": [{**r, "cost": money_str(r["cost"])} for r in rows],
            }
        )


class UsageDailyApi(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("days", int, description="1..366, default 30")],
        responses=OpenApiTypes.OBJECT,
    )
    def get(self, request):
        days = _days_param(request, default=30)
        end = selectors.today_for(request.user) + timedelta(days=1)
        start = end - timedelta(days=days)
        rows = selectors.spend_by_day(user=request.user, start=start, end=end)
        return Response(
            [
                {
                    "date": r["date"],
                    "cost": money_str(r["cost"]),
                    "tokens": r["tokens"],
                    "by_source": {k: money_str(v) for k, v in r["by_source"].items()},
                }
                for r in rows
            ]
        )


def _days_param(request, *, default: int) -> int:
    raw = request.query_params.get("days", default)
    try:
        days = int(raw)
    except (TypeError, ValueError):
        raise serializers.ValidationError({"days": "Must be a whole number."}) from None
    if not 1 <= days <= 366:
        raise serializers.ValidationError({"days": "Must be between 1 and 366."})
    return days


def _period(request) -> tuple[date, date]:
    today = selectors.today_for(request.user)
    if "days" in request.query_params:
        days = _days_param(request, default=30)
        return today + timedelta(days=1 - days), today + timedelta(days=1)
    return selectors.month_bounds(today)


class ManualEntryApi(APIView):
    class InputSerializer(serializers.Serializer):
        account = serializers.PrimaryKeyRelatedField(queryset=ProviderAccount.objects.none())
        date = serializers.DateField(help_text="UTC day the cost belongs to.")
        model = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
        description = serializers.CharField(
            max_length=255, required=False, allow_blank=True, default=""
        )
        # Every figure within its bound (usage/bounds.py): a 400 naming the field.
        cost = serializers.DecimalField(max_digits=28, **bounds.CHARGE.form_kwargs())
        input_tokens = serializers.IntegerField(
            **bounds.TOKENS.form_kwargs(), required=False, default=0
        )
        output_tokens = serializers.IntegerField(
            **bounds.TOKENS.form_kwargs(), required=False, default=0
        )
        request_count = serializers.IntegerField(
            **bounds.COUNT.form_kwargs(), required=False, default=0
        )
        seats = serializers.DecimalField(
            max_digits=20, **bounds.SEATS.form_kwargs(), required=False, default=Decimal(0)
        )
        credits = serializers.DecimalField(
            max_digits=20, **bounds.CREDITS.form_kwargs(), required=False, default=Decimal(0)
        )
        images = serializers.IntegerField(**bounds.COUNT.form_kwargs(), required=False, default=0)
        search_queries = serializers.IntegerField(
            **bounds.COUNT.form_kwargs(), required=False, default=0
        )
        audio_seconds = serializers.DecimalField(
            max_digits=20,
            **bounds.AUDIO_SECONDS.form_kwargs(),
            required=False,
            default=Decimal(0),
        )
        tags = serializers.DictField(
            child=serializers.CharField(max_length=200), required=False, default=dict
        )

        class Meta:
            ref_name = "ManualEntryInput"

        def __init__(self, *args, user=None, **kwargs):
            super().__init__(*args, **kwargs)
            # Only the requester's own accounts exist for this field: another user's id is
            # "not found", the same answer as an id that does not exist.
            self.fields["account"].queryset = ProviderAccount.objects.filter(owner=user)

        def validate_date(self, value: date) -> date:
            if value < EARLIEST:
                raise serializers.ValidationError("Must be 2000-01-01 or later.")
            if value > date.today() + timedelta(days=1):
                raise serializers.ValidationError("Must not be in the future.")
            return value

        def validate(self, attrs):
            if not attrs.get("model") and not attrs.get("description"):
                raise serializers.ValidationError({"description": "Give a model or a description."})
            return attrs

    @extend_schema(request=InputSerializer, responses={201: UsageRecordSerializer})
    def post(self, request):
        data = self.InputSerializer(data=request.data, user=request.user)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        record = manual_entry_create(
            account=values.pop("account"), day=values.pop("date"), **values
        )
        return Response(UsageRecordSerializer(record).data, status=status.HTTP_201_CREATED)
