"""JSON API for an account's ingest keys: list, create (plaintext shown once), change the
request limit, revoke.

Members of the account's workspace (session or personal API token); another workspace's account
or key is a 404. Every member lists; members make keys and change or revoke their own; admins
change or revoke any.
An ingest key itself cannot call these: it is accepted by the ingestion endpoint alone.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.access import own_or_admin
from accounts.models import Role
from providers import selectors, services
from providers.models import IngestKey
from providers.services import REQUESTS_PER_MINUTE_MAX


class IngestKeySerializer(serializers.ModelSerializer):
    is_active = serializers.BooleanField(read_only=True)

    class Meta:
        model = IngestKey
        fields = [
            "id",
            "name",
            "hint",
            "created_by",
            "created_at",
            "last_used_at",
            "revoked_at",
            "is_active",
            "requests_per_minute",
        ]
        read_only_fields = fields


class IngestKeyCreatedSerializer(IngestKeySerializer):
    key = serializers.CharField(read_only=True, help_text="The plaintext key. Shown only once.")

    class Meta(IngestKeySerializer.Meta):
        fields = [*IngestKeySerializer.Meta.fields, "key"]
        read_only_fields = fields


def _requests_per_minute_field(**kwargs) -> serializers.IntegerField:
    return serializers.IntegerField(
        min_value=1,
        max_value=REQUESTS_PER_MINUTE_MAX,
        allow_null=True,
        help_text="At most this many proxied calls in a clock minute (429 with retry-after "
        "past it); null: no limit. Ingestion is never limited.",
        **kwargs,
    )


class IngestKeyInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    requests_per_minute = _requests_per_minute_field(required=False, default=None)


class IngestKeyLimitSerializer(serializers.Serializer):
    requests_per_minute = _requests_per_minute_field()


def _key_for_change(request, pk, key_id, verb: str) -> IngestKey:
    """The account's key, if the caller may change it: whoever made it, or an admin."""
    account = selectors.account_get_for_workspace(workspace=request.membership.workspace, pk=pk)
    key = get_object_or_404(IngestKey, account=account, pk=key_id)
    if not own_or_admin(request.membership, key.created_by_id):
        raise PermissionDenied(f"Members {verb} only the keys they made; admins {verb} any.")
    return key


def _drf_error(exc: DjangoValidationError) -> serializers.ValidationError:
    return serializers.ValidationError(exc.message_dict)


class IngestKeyListCreateApi(APIView):
    required_roles = {"POST": Role.MEMBER}

    @extend_schema(responses=IngestKeySerializer(many=True))
    def get(self, request, pk):
        account = selectors.account_get_for_workspace(workspace=request.membership.workspace, pk=pk)
        keys = IngestKey.objects.filter(account=account)
        return Response(IngestKeySerializer(keys, many=True).data)

    @extend_schema(request=IngestKeyInputSerializer, responses={201: IngestKeyCreatedSerializer})
    def post(self, request, pk):
        account = selectors.account_get_for_workspace(workspace=request.membership.workspace, pk=pk)
        data = IngestKeyInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            raw, key = services.ingest_key_create(
                account=account, created_by=request.user, **data.validated_data
            )
        except DjangoValidationError as exc:
            raise _drf_error(exc) from exc
        key.key = raw  # on this response only; the database holds its SHA-256
        response = Response(IngestKeyCreatedSerializer(key).data, status=status.HTTP_201_CREATED)
        response["Cache-Control"] = "no-store"
        return response


class IngestKeyRevokeApi(APIView):
    required_roles = {"POST": Role.MEMBER}

    @extend_schema(request=None, responses=IngestKeySerializer)
    def post(self, request, pk, key_id):
        key = _key_for_change(request, pk, key_id, "revoke")
        services.ingest_key_revoke(key=key)
        return Response(IngestKeySerializer(key).data)


class IngestKeyDetailApi(APIView):
    required_roles = {"PATCH": Role.MEMBER}

    @extend_schema(request=IngestKeyLimitSerializer, responses=IngestKeySerializer)
    def patch(self, request, pk, key_id):
        """Set a key's request limit (`requests_per_minute`, null for none; omitted, nothing
        changes). Who may revoke the key may change it."""
        key = _key_for_change(request, pk, key_id, "change")
        data = IngestKeyLimitSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        if "requests_per_minute" in data.validated_data:
            try:
                services.ingest_key_limit_set(key=key, **data.validated_data)
            except DjangoValidationError as exc:
                raise _drf_error(exc) from exc
        return Response(IngestKeySerializer(key).data)
