"""JSON API for budgets, alerts and notification channels. Every object is the user's own."""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import generics, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from alerts import selectors, services
from alerts.models import Alert, Budget, NotificationChannel, NotificationDelivery
from alerts.services import THRESHOLD_MAX, THRESHOLD_MIN
from providers.models import Provider, ProviderAccount
from usage import bounds


def _drf_error(exc: DjangoValidationError) -> serializers.ValidationError:
    if hasattr(exc, "error_dict"):
        return serializers.ValidationError(exc.message_dict)
    return serializers.ValidationError({"non_field_errors": exc.messages})


@extend_schema_field(OpenApiTypes.INT)
class _UserAccountField(serializers.PrimaryKeyRelatedField):
    """An account id that must be one of the requesting user's accounts."""

    def get_queryset(self):
        return ProviderAccount.objects.filter(owner=self.context["request"].user)


# --- budgets ---------------------------------------------------------------------------------


class BudgetSerializer(serializers.ModelSerializer):
    provider = serializers.SlugRelatedField(
        slug_field="slug",
        queryset=Provider.objects.all(),
        required=False,
        allow_null=True,
        help_text="Provider slug; only with scope=provider.",
    )
    account = _UserAccountField(
        required=False, allow_null=True, help_text="Account id; only with scope=account."
    )
    amount = serializers.DecimalField(
        max_digits=20, **bounds.BUDGET.form_kwargs(), help_text="USD per month."
    )
    thresholds = serializers.ListField(
        child=serializers.IntegerField(min_value=THRESHOLD_MIN, max_value=THRESHOLD_MAX),
        allow_empty=False,
        max_length=20,
        required=False,
        help_text="Percentages of the amount that raise an alert, e.g. [80, 100].",
    )
    period = serializers.SerializerMethodField()
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
            "amount",
            "thresholds",
            "forecast_alert",
            "created_at",
            "period",
            "spent",
            "percent",
            "status",
        ]
        read_only_fields = ["created_at"]

    def _status(self, budget: Budget):
        cache = self.context.setdefault("_status", {})
        if budget.pk not in cache:
            user = self.context["request"].user
            cache[budget.pk] = selectors.budget_status_for(user=user, budget=budget)
        return cache[budget.pk]

    def get_period(self, budget) -> str:
        return self._status(budget).period.isoformat()

    def get_spent(self, budget) -> str:
        return str(self._status(budget).spent)

    def get_percent(self, budget) -> str | None:
        percent = self._status(budget).percent
        return None if percent is None else str(percent)

    def get_status(self, budget) -> str:
        return self._status(budget).status

    def validate(self, attrs):
        # A PUT replaces the target: an omitted provider/account means none.
        if not self.partial:
            attrs.setdefault("provider", None)
            attrs.setdefault("account", None)
        return attrs

    def create(self, validated_data):
        try:
            return services.budget_create(owner=self.context["request"].user, **validated_data)
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
        return selectors.budget_list(user=self.request.user)


class BudgetDetailApi(generics.RetrieveUpdateDestroyAPIView):
    serializer_class = BudgetSerializer

    def get_object(self):
        return selectors.budget_get_for_user(user=self.request.user, pk=self.kwargs["pk"])

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


class AlertFilterSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=Alert.Kind.choices, required=False)
    acknowledged = serializers.BooleanField(required=False, allow_null=True, default=None)


class AlertCreateSerializer(serializers.Serializer):
    message = serializers.CharField(max_length=2000)
    account = _UserAccountField(required=False, allow_null=True)


class AlertUpdateSerializer(serializers.Serializer):
    acknowledged = serializers.BooleanField()


class AlertListCreateApi(generics.GenericAPIView):
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
        alerts = selectors.alert_list(user=request.user, **filters.validated_data)
        page = self.paginate_queryset(alerts)
        return self.get_paginated_response(AlertSerializer(page, many=True).data)

    @extend_schema(request=AlertCreateSerializer, responses={201: AlertSerializer})
    def post(self, request):
        """File a note of your own (kind "manual")."""
        data = AlertCreateSerializer(data=request.data, context={"request": request})
        data.is_valid(raise_exception=True)
        try:
            alert = services.alert_manual_create(owner=request.user, **data.validated_data)
        except DjangoValidationError as exc:
            raise _drf_error(exc) from exc
        return Response(AlertSerializer(alert).data, status=status.HTTP_201_CREATED)


class AlertDetailApi(APIView):
    @extend_schema(responses=AlertSerializer)
    def get(self, request, pk):
        alert = selectors.alert_get_for_user(user=request.user, pk=pk)
        return Response(AlertSerializer(alert).data)

    @extend_schema(request=AlertUpdateSerializer, responses=AlertSerializer)
    def put(self, request, pk):
        """Acknowledge or reopen; every other field is read-only."""
        alert = selectors.alert_get_for_user(user=request.user, pk=pk)
        data = AlertUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        if data.validated_data["acknowledged"]:
            services.alert_acknowledge(alert=alert)
        else:
            services.alert_unacknowledge(alert=alert)
        return Response(AlertSerializer(alert).data)

    patch = put

    @extend_schema(responses={204: None})
    def delete(self, request, pk):
        alert = selectors.alert_get_for_user(user=request.user, pk=pk)
        services.alert_delete(alert=alert)
        return Response(status=status.HTTP_204_NO_CONTENT)


class AlertAcknowledgeApi(APIView):
    @extend_schema(request=None, responses=AlertSerializer)
    def post(self, request, pk):
        alert = selectors.alert_get_for_user(user=request.user, pk=pk)
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
        fields = ["id", "kind", "target", "target_display", "slack_format", "is_active"]

    def create(self, validated_data):
        try:
            return services.channel_create(owner=self.context["request"].user, **validated_data)
        except DjangoValidationError as exc:
            raise _drf_error(exc) from exc


class ChannelListCreateApi(generics.ListCreateAPIView):
    serializer_class = ChannelSerializer

    def get_queryset(self):
        return selectors.channel_list(user=self.request.user)


class ChannelDetailApi(generics.RetrieveDestroyAPIView):
    serializer_class = ChannelSerializer

    def get_object(self):
        return selectors.channel_get_for_user(user=self.request.user, pk=self.kwargs["pk"])

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
        channel = selectors.channel_get_for_user(user=request.user, pk=pk)
        delivery = services.channel_test_send(channel=channel)
        return Response(DeliverySerializer(delivery).data)
