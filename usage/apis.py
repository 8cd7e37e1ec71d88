"""JSON API for usage: month summary, history, by service, daily series, manual entries."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import Role
from costtracker.api import DecimalStringField, MoneyField
from providers.models import ProviderAccount
from usage import bounds, selectors
from usage.insight_apis import RAW_HISTORY_HEADER_DOC, RAW_HISTORY_HELP, raw_history_field
from usage.models import TOKEN_FIELDS, UNIT_FIELDS, Source, UsageRecord
from usage.raw_history import raw_history_header, raw_history_notice
from usage.services.records import manual_entry_create

MONEY = {"max_digits": 28, "decimal_places": 12}
EARLIEST = date(2000, 1, 1)


class UsageRecordSerializer(serializers.ModelSerializer):
    provider = serializers.CharField(source="provider.slug")
    account_name = serializers.CharField(source="account.name")
    cost = MoneyField(allow_null=True, help_text="null: unpriced (not free).")

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
            "ingest_key",
            "created_at",
        ]


class PeriodOutput(serializers.Serializer):
    start = serializers.DateField()
    end = serializers.DateField(help_text="Inclusive.")


class AccountMonthOutput(serializers.Serializer):
    account = serializers.IntegerField(source="account.pk")
    account_name = serializers.CharField(source="account.name")
    provider = serializers.CharField(source="account.provider.slug")
    cost = MoneyField()
    tokens = serializers.IntegerField()
    requests = serializers.IntegerField()
    unpriced_count = serializers.IntegerField()
    sources = serializers.SerializerMethodField()
    monthly_budget = MoneyField(source="account.monthly_budget", allow_null=True)
    budget_pct = DecimalStringField(allow_null=True)
    status = serializers.CharField()

    def get_sources(self, item) -> list[str]:
        return sorted(item.sources)


class ProviderCostOutput(serializers.Serializer):
    provider = serializers.CharField()
    cost = MoneyField()
    tokens = serializers.IntegerField()


class UsageSummaryOutput(serializers.Serializer):
    period = PeriodOutput()
    time_zone = serializers.CharField()
    total_cost = MoneyField()
    accounts = AccountMonthOutput(many=True)
    providers = ProviderCostOutput(many=True)
    raw_history_start = raw_history_field()


class UsageSummaryApi(APIView):
    """Current month (in the workspace's time zone) per account."""

    @extend_schema(parameters=[RAW_HISTORY_HEADER_DOC], responses=UsageSummaryOutput)
    def get(self, request):
        today = selectors.today_for(request.membership.workspace)
        first, next_first = selectors.month_bounds(today)
        items = selectors.month_summary(workspace=request.membership.workspace, today=today)
        by_provider: dict[str, dict] = {}
        for i in items:
            p = by_provider.setdefault(i.account.provider.slug, {"cost": Decimal(0), "tokens": 0})
            p["cost"] += i.cost
            p["tokens"] += i.tokens
        notice = raw_history_notice(start=first)
        summary = {
            "period": {"start": first, "end": next_first - timedelta(days=1)},
            "time_zone": request.membership.workspace.time_zone,
            "total_cost": sum((i.cost for i in items), Decimal(0)),
            "accounts": items,
            "providers": [{"provider": k, **v} for k, v in sorted(by_provider.items())],
            "raw_history_start": notice.first_kept if notice else None,
        }
        return raw_history_header(Response(UsageSummaryOutput(summary).data), notice)


class HistoryFilterSerializer(serializers.Serializer):
    provider = serializers.CharField(required=False)
    account = serializers.IntegerField(required=False, min_value=1)
    model = serializers.CharField(required=False, max_length=200)
    source = serializers.ChoiceField(choices=Source.choices, required=False)
    start = serializers.DateField(required=False, help_text="UTC day, inclusive.")
    end = serializers.DateField(required=False, help_text="UTC day, inclusive.")
    project = serializers.CharField(
        required=False, max_length=bounds.TAG_MAX_CHARS, help_text="Project tag, exact value."
    )
    user = serializers.CharField(
        required=False, max_length=bounds.TAG_MAX_CHARS, help_text="User tag, exact value."
    )
    feature = serializers.CharField(
        required=False, max_length=bounds.TAG_MAX_CHARS, help_text="Feature tag, exact value."
    )
    ingest_key = serializers.IntegerField(
        required=False, min_value=1, help_text="The id of the ingest key that wrote the records."
    )

    def validate(self, attrs):
        if attrs.get("start") and attrs.get("end") and attrs["start"] > attrs["end"]:
            raise serializers.ValidationError({"end": "Must not be before start."})
        return attrs


class HistoryPagination(PageNumberPagination):
    """The usual page, with the range's raw-history start beside the records (set by
    UsageHistoryApi; documented here, where the page's schema is made)."""

    def get_paginated_response_schema(self, schema):
        paginated = super().get_paginated_response_schema(schema)
        paginated["properties"]["raw_history_start"] = {
            "type": "string",
            "format": "date",
            "nullable": True,
            "description": RAW_HISTORY_HELP,
        }
        paginated["required"] = [*paginated.get("required", []), "raw_history_start"]
        return paginated


@extend_schema(parameters=[HistoryFilterSerializer, RAW_HISTORY_HEADER_DOC])
class UsageHistoryApi(generics.ListAPIView):
    """Usage records, newest first, 50 a page. `raw_history_start` (and the
    X-Raw-History-Start header) say when the range reaches before the raw history."""

    serializer_class = UsageRecordSerializer
    pagination_class = HistoryPagination

    def get_paginated_response(self, data):
        response = super().get_paginated_response(data)
        notice = self.raw_history
        response.data["raw_history_start"] = notice.first_kept if notice else None
        return raw_history_header(response, notice)

    def get_queryset(self):
        filters = HistoryFilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        f = filters.validated_data
        # No start: the list reaches back to the beginning.
        self.raw_history = raw_history_notice(start=f.get("start"), source=f.get("source"))
        return selectors.usage_history(
            workspace=self.request.membership.workspace,
            provider=f.get("provider"),
            account_id=f.get("account"),
            model=f.get("model"),
            source=f.get("source"),
            start=f.get("start"),
            end=f.get("end"),
            tags={tag: f[tag] for tag in bounds.TAG_KEYS if f.get(tag)},
            ingest_key_id=f.get("ingest_key"),
        )


class ServiceSpendOutput(serializers.Serializer):
    provider = serializers.CharField()
    name = serializers.CharField()
    cost = MoneyField()
    tokens = serializers.IntegerField()
    unpriced_count = serializers.IntegerField()


class UsageByServiceOutput(serializers.Serializer):
    start = serializers.DateField()
    end = serializers.DateField(help_text="Inclusive.")
    services = ServiceSpendOutput(many=True)
    raw_history_start = raw_history_field()


class UsageByServiceApi(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("days", int, description="1..366; default: this month"),
            RAW_HISTORY_HEADER_DOC,
        ],
        responses=UsageByServiceOutput,
    )
    def get(self, request):
        start, end = _period(request)
        rows = selectors.spend_by_provider(
            workspace=request.membership.workspace, start=start, end=end
        )
        notice = raw_history_notice(start=start)
        body = {
            "start": start,
            "end": end - timedelta(days=1),
            "services": rows,
            "raw_history_start": notice.first_kept if notice else None,
        }
        return raw_history_header(Response(UsageByServiceOutput(body).data), notice)


# One money figure per source, every source always present.
SourceCostOutput = type(
    "SourceCostOutput", (serializers.Serializer,), {s: MoneyField() for s in Source.values}
)


class DailySpendOutput(serializers.Serializer):
    date = serializers.DateField(help_text="UTC day.")
    cost = MoneyField()
    tokens = serializers.IntegerField()
    by_source = SourceCostOutput()


class UsageDailyApi(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("days", int, description="1..366, default 30"),
            RAW_HISTORY_HEADER_DOC,
        ],
        responses=DailySpendOutput(many=True),
    )
    def get(self, request):
        """One entry per UTC day, oldest first, the days without spend included."""
        days = _days_param(request, default=30)
        end = selectors.today_for(request.membership.workspace) + timedelta(days=1)
        start = end - timedelta(days=days)
        rows = selectors.spend_by_day(workspace=request.membership.workspace, start=start, end=end)
        # A list: the raw-history start can only go in the header.
        notice = raw_history_notice(start=start)
        return raw_history_header(Response(DailySpendOutput(rows, many=True).data), notice)


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
    today = selectors.today_for(request.membership.workspace)
    if "days" in request.query_params:
        days = _days_param(request, default=30)
        return today + timedelta(days=1 - days), today + timedelta(days=1)
    return selectors.month_bounds(today)


class ManualEntryApi(APIView):
    required_roles = {"POST": Role.MEMBER}

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

        def __init__(self, *args, workspace=None, **kwargs):
            super().__init__(*args, **kwargs)
            # Only the requester's own accounts exist for this field: another user's id is
            # "not found", the same answer as an id that does not exist.
            self.fields["account"].queryset = ProviderAccount.objects.filter(workspace=workspace)

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
        data = self.InputSerializer(data=request.data, workspace=request.membership.workspace)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        record = manual_entry_create(
            account=values.pop("account"), day=values.pop("date"), **values
        )
        return Response(UsageRecordSerializer(record).data, status=status.HTTP_201_CREATED)


class ExplanationLineOutput(serializers.Serializer):
    category = serializers.CharField()
    label = serializers.CharField()
    count = DecimalStringField()
    unit = serializers.CharField(help_text='"per M tokens", "per hour" or "each".')
    unit_price = DecimalStringField(
        allow_null=True, help_text="As stored: per token, per hour or per unit; null: no price."
    )
    amount = MoneyField(allow_null=True, help_text="count × unit_price; null: unpriced.")
    formula = serializers.CharField()


class ExplanationPriceRowOutput(serializers.Serializer):
    id = serializers.IntegerField()
    model = serializers.CharField()
    valid_from = serializers.DateTimeField()
    valid_to = serializers.DateTimeField(allow_null=True, help_text="Exclusive; null: open.")
    origin = serializers.CharField(help_text="imported or admin.")
    long_context_threshold = serializers.IntegerField(allow_null=True)
    long_context_applied = serializers.BooleanField()


class ExplanationOfficialOutput(serializers.Serializer):
    line_item = serializers.CharField()
    day = serializers.DateField(help_text="UTC day.")
    raw = serializers.JSONField(help_text="The provider's result as synced.")


class ExplanationManualOutput(serializers.Serializer):
    workspace = serializers.CharField()
    note = serializers.CharField()
    day = serializers.DateField(help_text="UTC day.")
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class UsageRecordExplanationApi(APIView):
    """One usage record and how its cost came about (404 for a record you may not see)."""

    class OutputSerializer(serializers.Serializer):
        record = UsageRecordSerializer()
        kind = serializers.CharField(help_text="The record's source: estimated, official, manual.")
        rule = serializers.CharField(
            help_text="Estimated records: price_book, no_price, provider_cost, free, "
            "compute_rate or per_request; empty for a failed or cut-off call and other sources."
        )
        summary = serializers.CharField()
        notes = serializers.ListField(child=serializers.CharField())
        lines = ExplanationLineOutput(many=True)
        arithmetic = serializers.CharField()
        lines_total = MoneyField(allow_null=True, help_text="The sum of the lines; null: unpriced.")
        stored_cost = MoneyField(allow_null=True, help_text="The record's cost; null: unpriced.")
        current_cost = MoneyField(
            allow_null=True, help_text="What today's price book and rule give, rounded as stored."
        )
        matches_current = serializers.BooleanField()
        price_row = ExplanationPriceRowOutput(allow_null=True)
        add_price_url = serializers.CharField(allow_null=True)
        reprice_command = serializers.CharField(allow_null=True)
        official = ExplanationOfficialOutput(allow_null=True)
        manual = ExplanationManualOutput(allow_null=True)

        class Meta:
            ref_name = "UsageRecordExplanation"

    @extend_schema(responses=OutputSerializer)
    def get(self, request, pk):
        from usage.explain import usage_record_explain

        record = selectors.record_get_for_workspace(workspace=request.membership.workspace, pk=pk)
        return Response(self.OutputSerializer(usage_record_explain(record=record)).data)
