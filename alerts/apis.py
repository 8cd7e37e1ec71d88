"""JSON API for budgets, alerts and notification channels. Every object is the workspace's."""

from __future__ import annotations

from decimal import Decimal

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import generics, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import Role
from alerts import selectors, services
from alerts.models import Alert, Budget, NotificationChannel, NotificationDelivery
from alerts.services import THRESHOLD_MAX, THRESHOLD_MIN
from costtracker.api import DecimalStringField, MoneyField, decimal_str, money_str
from providers.models import IngestKey, Provider, ProviderAccount
from usage import bounds


def _drf_error(exc: DjangoValidationError) -> serializers.ValidationError:
    if hasattr(exc, "error_dict"):
        return serializers.ValidationError(exc.message_dict)
    return serializers.ValidationError({"non_field_errors": exc.messages})


@extend_schema_field(OpenApiTypes.INT)
class _WorkspaceAccountField(serializers.PrimaryKeyRelatedField):
    """An account id that must be one of the request's workspace's accounts."""

    def get_queryset(self):
        return ProviderAccount.objects.filter(
            workspace=self.context["request"].membership.workspace
        )


@extend_schema_field(OpenApiTypes.INT)
class _WorkspaceIngestKeyField(serializers.PrimaryKeyRelatedField):
    """An ingest key id that must be a key of one of the request's workspace's accounts."""

    def get_queryset(self):
        return IngestKey.objects.filter(
            account__workspace=self.context["request"].membership.workspace
        ).select_related("account")


# --- budgets ---------------------------------------------------------------------------------

# What each scope names; a PUT without them means none (the target is replaced as a whole).
_TARGET_BLANKS = {"provider": None, "account": None, "ingest_key": None, "tag": "", "tag_value": ""}


class BudgetSerializer(serializers.ModelSerializer):
    provider = serializers.SlugRelatedField(
        slug_field="slug",
        queryset=Provider.objects.all(),
        required=False,
        allow_null=True,
        help_text="Provider slug; only with scope=provider.",
    )
    account = _WorkspaceAccountField(
        required=False, allow_null=True, help_text="Account id; only with scope=account."
    )
    ingest_key = _WorkspaceIngestKeyField(
        required=False,
        allow_null=True,
        help_text="Ingest key id; only with scope=ingest_key.",
    )
    tag = serializers.ChoiceField(
        choices=Budget.Tag.choices,
        required=False,
        allow_blank=True,
        help_text="project, user or feature; only with scope=tag.",
    )
    tag_value = serializers.CharField(
        max_length=bounds.TAG_MAX_CHARS,
        required=False,
        allow_blank=True,
        help_text="The tag's value, exactly as calls send it; only with scope=tag.",
    )
    scope = serializers.ChoiceField(
        choices=Budget.Scope.choices,
        default=Budget.Scope.OVERALL,
        help_text="Default: overall (all spend).",
    )
    period = serializers.ChoiceField(
        choices=Budget.Period.choices,
        default=Budget.Period.MONTHLY,
        help_text="daily, weekly (Monday to Sunday) or monthly (the default), calendar periods "
        "in the workspace's time zone.",
    )
    amount = MoneyField(max_digits=20, **bounds.BUDGET.form_kwargs(), help_text="USD per period.")
    thresholds = serializers.ListField(
        child=serializers.IntegerField(min_value=THRESHOLD_MIN, max_value=THRESHOLD_MAX),
        allow_empty=False,
        max_length=20,
        required=False,
        help_text="Percentages of the amount that raise an alert, e.g. [80, 100].",
    )
    period_start = serializers.SerializerMethodField(
        help_text="First day of the current period (workspace time zone)."
    )
    period_end = serializers.SerializerMethodField(
        help_text="First day after the current period (exclusive)."
    )
    spent = serializers.SerializerMethodField()
    percent = serializers.SerializerMethodField()
    status = serializers.SerializerMethodField()

    class Meta:
        model = Budget
        fields = [
            "id",
            "scope",
            "provider",
            "account",
            "ingest_key",
            "tag",
            "tag_value",
            "period",
            "amount",
            "thresholds",
            "forecast_alert",
            "enforced",
            "refuse_unpriced",
            "created_at",
            "period_start",
            "period_end",
            "spent",
            "percent",
            "status",
        ]
        read_only_fields = ["created_at"]
        extra_kwargs = {
            "forecast_alert": {
                "help_text": "Warn when the month-end forecast exceeds the amount; monthly "
                "budgets over all spend, a provider or an account only."
            },
            "enforced": {
                "help_text": "The proxy refuses the calls the budget covers once the period's "
                "spend reaches the amount."
            },
            "refuse_unpriced": {
                "help_text": "With enforced only: also refuse models without a known price."
            },
        }

    def _status(self, budget: Budget):
        cache = self.context.setdefault("_status", {})
        if budget.pk not in cache:
            workspace = self.context["request"].membership.workspace
            cache[budget.pk] = selectors.budget_status_for(workspace=workspace, budget=budget)
        return cache[budget.pk]

    @extend_schema_field(OpenApiTypes.DATE)
    def get_period_start(self, budget) -> str:
        return self._status(budget).period.isoformat()

    @extend_schema_field(OpenApiTypes.DATE)
    def get_period_end(self, budget) -> str:
        return self._status(budget).period_end.isoformat()

    @extend_schema_field(MoneyField(read_only=True))
    def get_spent(self, budget) -> str:
        return money_str(self._status(budget).spent)

    @extend_schema_field(DecimalStringField(allow_null=True))
    def get_percent(self, budget) -> str | None:
        return decimal_str(self._status(budget).percent)

    def get_status(self, budget) -> str:
        return self._status(budget).status

    def validate(self, attrs):
        # A PUT replaces the target: an omitted provider, account, key or tag means none.
        if not self.partial:
            for name, blank in _TARGET_BLANKS.items():
                attrs.setdefault(name, blank)
        return attrs

    def create(self, validated_data):
        try:
            return services.budget_create(
                workspace=self.context["request"].membership.workspace, **validated_data
            )
        except DjangoValidationError as exc:
            raise _drf_error(exc) from exc

    def update(self, instance, validated_data):
        try:
            return services.budget_update(budget=instance, **validated_data)
        except DjangoValidationError as exc:
            # The instance was changed in memory before validation failed; reload it.
            instance.refresh_from_db()
            raise _drf_error(exc) from exc


class BudgetListCreateApi(generics.ListCreateAPIView):
    serializer_class = BudgetSerializer

    def get_queryset(self):
        return selectors.budget_list(workspace=self.request.membership.workspace)


class BudgetDetailApi(generics.RetrieveUpdateDestroyAPIView):
    serializer_class = BudgetSerializer

    def get_object(self):
        return selectors.budget_get_for_workspace(
            workspace=self.request.membership.workspace, pk=self.kwargs["pk"]
        )

    def perform_destroy(self, instance):
        services.budget_delete(budget=instance)


# --- alerts ----------------------------------------------------------------------------------


class AlertSerializer(serializers.ModelSerializer):
    acknowledged = serializers.SerializerMethodField()

    class Meta:
        model = Alert
        fields = [
            "id",
            "kind",
            "message",
            "budget",
            "account",
            "threshold",
            "period",
            "data",
            "created_at",
            "acknowledged",
            "acknowledged_at",
        ]
        read_only_fields = fields

    def get_acknowledged(self, alert) -> bool:
        return alert.acknowledged_at is not None

    def to_representation(self, instance):
        data = super().to_representation(instance)
        data["data"] = alert_data_for_api(data["data"])
        return data


# Money figures in an alert's data (stored as text when it fired) leave in the API's one
# money format; their other numbers become plain decimals (never an exponent). Names and
# labels are left alone, even one that reads like a number.
_ALERT_MONEY_KEYS = frozenset({"amount", "spent", "projected_total", "low", "high"})
_ALERT_NUMBER_KEYS = _ALERT_MONEY_KEYS | {"percent", "observed", "baseline", "threshold", "k"}


def alert_data_for_api(data):
    if not isinstance(data, dict):
        return data
    out = {}
    for key, value in data.items():
        if key in _ALERT_NUMBER_KEYS and isinstance(value, str) and _is_number(value):
            value = money_str(value) if key in _ALERT_MONEY_KEYS else decimal_str(value)
        out[key] = value
    return out


def _is_number(text: str) -> bool:
    try:
        return Decimal(text).is_finite()
    except ArithmeticError:
        return False


class AlertFilterSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=Alert.Kind.choices, required=False)
    acknowledged = serializers.BooleanField(required=False, allow_null=True, default=None)


class AlertCreateSerializer(serializers.Serializer):
    message = serializers.CharField(max_length=2000)
    account = _WorkspaceAccountField(required=False, allow_null=True)


class AlertUpdateSerializer(serializers.Serializer):
    acknowledged = serializers.BooleanField()


class AlertListCreateApi(generics.GenericAPIView):
    required_roles = {"POST": Role.MEMBER}

    serializer_class = AlertSerializer

    @extend_schema(
        parameters=[
            OpenApiParameter("kind", str, enum=Alert.Kind.values),
            OpenApiParameter("acknowledged", bool),
        ],
        responses=AlertSerializer(many=True),
    )
    def get(self, request):
        filters = AlertFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        alerts = selectors.alert_list(
            workspace=request.membership.workspace, **filters.validated_data
        )
        page = self.paginate_queryset(alerts)
        return self.get_paginated_response(AlertSerializer(page, many=True).data)

    @extend_schema(request=AlertCreateSerializer, responses={201: AlertSerializer})
    def post(self, request):
        """File a note of your own (kind "manual")."""
        data = AlertCreateSerializer(data=request.data, context={"request": request})
        data.is_valid(raise_exception=True)
        try:
            alert = services.alert_manual_create(
                workspace=request.membership.workspace, **data.validated_data
            )
        except DjangoValidationError as exc:
            raise _drf_error(exc) from exc
        return Response(AlertSerializer(alert).data, status=status.HTTP_201_CREATED)


class AlertDetailApi(APIView):
    required_roles = {"PUT": Role.MEMBER, "PATCH": Role.MEMBER}

    @extend_schema(responses=AlertSerializer)
    def get(self, request, pk):
        alert = selectors.alert_get_for_workspace(workspace=request.membership.workspace, pk=pk)
        return Response(AlertSerializer(alert).data)

    @extend_schema(request=AlertUpdateSerializer, responses=AlertSerializer)
    def put(self, request, pk):
        """Acknowledge or reopen; every other field is read-only."""
        return self._update(request, pk, partial=False)

    @extend_schema(request=AlertUpdateSerializer, responses=AlertSerializer)
    def patch(self, request, pk):
        """As PUT; `acknowledged` may be omitted (nothing changes), as the schema says."""
        return self._update(request, pk, partial=True)

    def _update(self, request, pk, *, partial: bool):
        alert = selectors.alert_get_for_workspace(workspace=request.membership.workspace, pk=pk)
        data = AlertUpdateSerializer(data=request.data, partial=partial)
        data.is_valid(raise_exception=True)
        acknowledged = data.validated_data.get("acknowledged")
        if acknowledged is True:
            services.alert_acknowledge(alert=alert)
        elif acknowledged is False:
            services.alert_unacknowledge(alert=alert)
        return Response(AlertSerializer(alert).data)

    @extend_schema(responses={204: None})
    def delete(self, request, pk):
        alert = selectors.alert_get_for_workspace(workspace=request.membership.workspace, pk=pk)
        services.alert_delete(alert=alert)
        return Response(status=status.HTTP_204_NO_CONTENT)


class AlertAcknowledgeApi(APIView):
    required_roles = {"POST": Role.MEMBER}

    @extend_schema(request=None, responses=AlertSerializer)
    def post(self, request, pk):
        alert = selectors.alert_get_for_workspace(workspace=request.membership.workspace, pk=pk)
        services.alert_acknowledge(alert=alert)
        return Response(AlertSerializer(alert).data)


# --- notification channels -------------------------------------------------------------------


class ChannelSerializer(serializers.ModelSerializer):
    """The target is write-only: a webhook URL often embeds a token."""

    target = serializers.CharField(
        write_only=True, max_length=2000, help_text="Email address or http(s) webhook URL."
    )
    target_display = serializers.CharField(read_only=True)

    class Meta:
        model = NotificationChannel
        fields = ["id", "kind", "target", "target_display", "format", "is_active"]
        extra_kwargs = {
            "format": {
                "help_text": "Webhooks only: the body sent. generic (the JSON documented in the "
                "README), slack (Block Kit), teams (an Adaptive Card message), discord (an "
                "embed). Email channels are always generic."
            }
        }

    def to_internal_value(self, data):
        # An unknown field is an error, not ignored: a client still sending the old
        # `slack_format` flag would otherwise get a generic-JSON channel without a word.
        if hasattr(data, "keys"):
            unknown = sorted(set(data.keys()) - set(self.fields))
            if unknown:
                raise serializers.ValidationError(
                    {
                        name: ["Unknown field (the webhook body is chosen by `format`)."]
                        for name in unknown
                    }
                )
        return super().to_internal_value(data)

    def create(self, validated_data):
        try:
            return services.channel_create(
                workspace=self.context["request"].membership.workspace, **validated_data
            )
        except DjangoValidationError as exc:
            raise _drf_error(exc) from exc


class ChannelListCreateApi(generics.ListCreateAPIView):
    serializer_class = ChannelSerializer

    def get_queryset(self):
        return selectors.channel_list(workspace=self.request.membership.workspace)


class ChannelDetailApi(generics.RetrieveDestroyAPIView):
    serializer_class = ChannelSerializer

    def get_object(self):
        return selectors.channel_get_for_workspace(
            workspace=self.request.membership.workspace, pk=self.kwargs["pk"]
        )

    def perform_destroy(self, instance):
        services.channel_delete(channel=instance)


class DeliverySerializer(serializers.ModelSerializer):
    class Meta:
        model = NotificationDelivery
        fields = [
            "id",
            "alert",
            "channel",
            "status",
            "attempts",
            "error",
            "last_attempt_at",
            "next_attempt_at",
            "sent_at",
        ]
        read_only_fields = fields


class ChannelTestApi(APIView):
    @extend_schema(request=None, responses={200: DeliverySerializer})
    def post(self, request, pk):
        """Send a test notification to the channel now (one attempt) and return the delivery.

        Recorded like a real delivery; a failed send is a 200 with status "failed" and the
        error, since the request itself succeeded.
        """
        channel = selectors.channel_get_for_workspace(workspace=request.membership.workspace, pk=pk)
        delivery = services.channel_test_send(channel=channel)
        return Response(DeliverySerializer(delivery).data)
