"""JSON API for the provider catalogue ("services") and provider accounts."""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import generics, permissions, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from costtracker.api import MoneyField
from providers import selectors, services
from providers.account_settings import settings_clean, settings_openapi_schema, settings_values
from providers.fields import secret_text_validate
from providers.models import Provider, ProviderAccount
from providers.services import UNCHANGED
from usage.bounds import ACCOUNT_BUDGET


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


class AccountSettingsField(serializers.Field):
    """``config``: the provider's typed settings (declared by its adapter), all keys shown.

    Reads the whole account (the provider decides which keys exist); validated as a whole in
    AccountSerializer.validate, where the provider of the request is known.
    """

    def __init__(self, **kwargs):
        super().__init__(source="*", **kwargs)

    def to_representation(self, value: ProviderAccount):
        return settings_values(kind=value.provider.slug, stored=value.config)

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            raise serializers.ValidationError("Must be a JSON object.")
        return {"config": data}


class AccountSettingsFieldSchema(OpenApiSerializerFieldExtension):
    target_class = AccountSettingsField

    def map_serializer_field(self, auto_schema, direction):
        return settings_openapi_schema()


class AccountSerializer(serializers.ModelSerializer):
    """Secrets are write-only: responses carry has_* flags and at most the last 4 characters."""

    provider = serializers.SlugRelatedField(
        slug_field="slug",
        queryset=Provider.objects.all(),
        help_text="Cannot change once the account has usage (400 on `provider`).",
    )
    provider_name = serializers.CharField(source="provider.name", read_only=True)
    api_key = serializers.CharField(
        write_only=True,
        required=False,
        allow_null=True,
        allow_blank=True,
        max_length=500,
        style={"input_type": "password"},
        validators=[secret_text_validate],
        help_text="Omit to keep; null to clear.",
    )
    admin_key = serializers.CharField(
        write_only=True,
        required=False,
        allow_null=True,
        allow_blank=True,
        max_length=500,
        style={"input_type": "password"},
        validators=[secret_text_validate],
        help_text="Admin key or GitHub token. Omit to keep.",
    )
    has_api_key = serializers.BooleanField(read_only=True)
    has_admin_key = serializers.BooleanField(read_only=True)
    config = AccountSettingsField(
        required=False,
        help_text="The provider's settings. Keys left out keep their value; null resets one.",
    )
    monthly_budget = MoneyField(
        max_digits=20, **ACCOUNT_BUDGET.form_kwargs(), required=False, allow_null=True
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
        workspace = self.context["request"].membership.workspace
        clash = ProviderAccount.objects.filter(workspace=workspace, name=value)
        if self.instance is not None:
            clash = clash.exclude(pk=self.instance.pk)
        if clash.exists():
            raise serializers.ValidationError(
                "This workspace already has an account with this name."
            )
        return value

    def validate(self, attrs):
        # The service checks all of this again; here it becomes a 400 naming the field.
        account = self.instance
        provider = attrs.get("provider") or (account.provider if account else None)
        if provider is None:
            return attrs
        try:
            if account is not None:
                services.account_provider_change_check(account=account, provider=provider)
            same = account is not None and provider.pk == account.provider_id
            settings_clean(
                kind=provider.slug,
                values=attrs.get("config"),
                base=account.config if same else None,
            )
        except DjangoValidationError as exc:
            if "provider" in exc.message_dict:
                raise serializers.ValidationError(exc.message_dict) from exc
            raise serializers.ValidationError({"config": exc.message_dict}) from exc
        return attrs

    def create(self, validated_data):
        try:
            return services.account_create(
                workspace=self.context["request"].membership.workspace, **validated_data
            )
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.message_dict) from exc

    def update(self, instance, validated_data):
        secrets = {k: validated_data.pop(k, UNCHANGED) for k in ("api_key", "admin_key")}
        # An empty string in a PUT/PATCH means "keep", like the empty password box in the UI.
        secrets = {k: (UNCHANGED if v == "" else v) for k, v in secrets.items()}
        try:
            return services.account_update(account=instance, **secrets, **validated_data)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.message_dict) from exc


class AccountListCreateApi(generics.ListCreateAPIView):
    serializer_class = AccountSerializer

    def get_queryset(self):
        return selectors.account_list(workspace=self.request.membership.workspace)


class AccountDetailApi(generics.RetrieveUpdateDestroyAPIView):
    serializer_class = AccountSerializer

    def get_queryset(self):
        return selectors.account_list(workspace=self.request.membership.workspace)

    def perform_destroy(self, instance):
        services.account_delete(account=instance)


TestResult = inline_serializer(
    "TestResult",
    {
        "ok": serializers.BooleanField(),
        "message": serializers.CharField(),
        "error_class": serializers.CharField(
            help_text="Empty on success; else auth, rate_limited, timeout, server_error, "
            "malformed, network, config or internal."
        ),
    },
)


class AccountTestApi(APIView):
    """One cheap authenticated call to the provider with the stored key.

    200 when it worked; 400 when the account lacks what the test needs; 502 when the provider
    refused or failed. The message never holds a secret, even one the provider echoed.
    """

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

        account = selectors.account_get_for_workspace(workspace=request.membership.workspace, pk=pk)
        result = account_test_connection(account=account)
        code = status.HTTP_200_OK if result.ok else result.http_status
        body = {"ok": result.ok, "message": result.message, "error_class": result.error_class}
        return Response(body, status=code)
