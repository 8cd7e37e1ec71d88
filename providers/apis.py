"""JSON API for the provider catalogue ("services") and provider accounts."""

from __future__ import annotations

from decimal import Decimal

from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import generics, permissions, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from costtracker.api import MoneyField
from providers import selectors, services
from providers.models import Provider, ProviderAccount
from providers.services import UNCHANGED


class ProviderSerializer(serializers.ModelSerializer):
    class Meta:
        model = Provider
        fields = [
            "id",
            "slug",
            "name",
            "description",
            "has_official_api",
            "supports_per_request",
            "supports_manual",
        ]
        read_only_fields = ["id", "slug"]


class ServiceListApi(generics.ListAPIView):
    serializer_class = ProviderSerializer
    pagination_class = None
    queryset = Provider.objects.all()


class IsStaffForWrites(permissions.BasePermission):
    def has_permission(self, request, view):
        return request.method in permissions.SAFE_METHODS or bool(request.user.is_staff)


class ServiceDetailApi(generics.RetrieveUpdateAPIView):
    serializer_class = ProviderSerializer
    permission_classes = [permissions.IsAuthenticated, IsStaffForWrites]
    queryset = Provider.objects.all()


def _validate_config(value):
    if not isinstance(value, dict):
        raise serializers.ValidationError("Must be a JSON object.")
    for key, item in value.items():
        if not isinstance(item, (str, int, float, Decimal, bool)) and item is not None:
            raise serializers.ValidationError(f"{key}: only plain values are allowed.")
    return value


def _validate_secret(value):
    # A key travels in an HTTP header: only printable ASCII, no spaces (a pasted key with a
    # stray character would otherwise fail on every call, far from where it was typed).
    if value and not (value.isascii() and value.isprintable() and " " not in value):
        raise serializers.ValidationError("Use printable ASCII characters only, no spaces.")
    return value


class AccountSerializer(serializers.ModelSerializer):
    """Secrets are write-only: responses carry has_* flags and at most the last 4 characters."""

    provider = serializers.SlugRelatedField(slug_field="slug", queryset=Provider.objects.all())
    provider_name = serializers.CharField(source="provider.name", read_only=True)
    api_key = serializers.CharField(
        write_only=True,
        required=False,
        allow_null=True,
        allow_blank=True,
        max_length=500,
        style={"input_type": "password"},
        validators=[_validate_secret],
        help_text="Omit to keep; null to clear.",
    )
    admin_key = serializers.CharField(
        write_only=True,
        required=False,
        allow_null=True,
        allow_blank=True,
        max_length=500,
        style={"input_type": "password"},
        validators=[_validate_secret],
        help_text="Admin key or GitHub token. Omit to keep.",
    )
    has_api_key = serializers.BooleanField(read_only=True)
    has_admin_key = serializers.BooleanField(read_only=True)
    config = serializers.JSONField(required=False, validators=[_validate_config])
    monthly_budget = MoneyField(
        max_digits=20, decimal_places=2, min_value=Decimal("0"), required=False, allow_null=True
    )

    class Meta:
        model = ProviderAccount
        fields = [
            "id",
            "provider",
            "provider_name",
            "name",
            "api_key",
            "admin_key",
            "has_api_key",
            "api_key_last4",
            "has_admin_key",
            "admin_key_last4",
            "config",
            "monthly_budget",
            "is_active",
            "needs_attention",
            "last_sync_at",
            "last_sync_status",
            "last_sync_error",
            "created_at",
            "updated_at",
        ]
        read_only_fields = [
            "api_key_last4",
            "admin_key_last4",
            "needs_attention",
            "last_sync_at",
            "last_sync_status",
            "last_sync_error",
            "created_at",
            "updated_at",
        ]

    def validate_name(self, value: str) -> str:
        user = self.context["request"].user
        clash = ProviderAccount.objects.filter(owner=user, name=value)
        if self.instance is not None:
            clash = clash.exclude(pk=self.instance.pk)
        if clash.exists():
            raise serializers.ValidationError("You already have an account with this name.")
        return value

    def create(self, validated_data):
        return services.account_create(owner=self.context["request"].user, **validated_data)

    def update(self, instance, validated_data):
        secrets = {k: validated_data.pop(k, UNCHANGED) for k in ("api_key", "admin_key")}
        # An empty string in a PUT/PATCH means "keep", like the empty password box in the UI.
        secrets = {k: (UNCHANGED if v == "" else v) for k, v in secrets.items()}
        return services.account_update(account=instance, **secrets, **validated_data)


class AccountListCreateApi(generics.ListCreateAPIView):
    serializer_class = AccountSerializer

    def get_queryset(self):
        return selectors.account_list(user=self.request.user)


class AccountDetailApi(generics.RetrieveUpdateDestroyAPIView):
    serializer_class = AccountSerializer

    def get_queryset(self):
        return selectors.account_list(user=self.request.user)

    def perform_destroy(self, instance):
        services.account_delete(account=instance)


TestResult = inline_serializer(
    "TestResult", {"ok": serializers.BooleanField(), "message": serializers.CharField()}
)


class AccountTestApi(APIView):
    """One cheap authenticated call to the provider with the stored key."""

    @extend_schema(
        request=None,
        responses={
            200: TestResult,
            400: OpenApiResponse(TestResult, description="The account cannot be tested as is."),
            502: OpenApiResponse(TestResult, description="The provider refused or failed."),
        },
    )
    def post(self, request, pk):
        from providers.connection import account_test_connection

        account = selectors.account_get_for_user(user=request.user, pk=pk)
        result = account_test_connection(account=account)
        code = status.HTTP_200_OK if result.ok else result.http_status
        return Response({"ok": result.ok, "message": result.message}, status=code)
