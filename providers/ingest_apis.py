"""JSON API for an account's ingest keys: list, create (plaintext shown once), revoke.

Members of the account's workspace (session or personal API token); another workspace's account
or key is a 404. Every member lists; members make keys and revoke their own; admins revoke any.
An ingest key itself cannot call these: it is accepted by the ingestion endpoint alone.
"""

from __future__ import annotations

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
        ]
        read_only_fields = fields


class IngestKeyCreatedSerializer(IngestKeySerializer):
    key = serializers.CharField(read_only=True, help_text="The plaintext key. Shown only once.")

    class Meta(IngestKeySerializer.Meta):
        fields = [*IngestKeySerializer.Meta.fields, "key"]
        read_only_fields = fields


class IngestKeyInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")


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
        raw, key = services.ingest_key_create(
            account=account, name=data.validated_data["name"], created_by=request.user
        )
        key.key = raw  # on this response only; the database holds its SHA-256
        response = Response(IngestKeyCreatedSerializer(key).data, status=status.HTTP_201_CREATED)
        response["Cache-Control"] = "no-store"
        return response


class IngestKeyRevokeApi(APIView):
    required_roles = {"POST": Role.MEMBER}

    @extend_schema(request=None, responses=IngestKeySerializer)
    def post(self, request, pk, key_id):
        account = selectors.account_get_for_workspace(workspace=request.membership.workspace, pk=pk)
        key = get_object_or_404(IngestKey, account=account, pk=key_id)
        if not own_or_admin(request.membership, key.created_by_id):
            raise PermissionDenied("Members revoke only the keys they made; admins revoke any.")
        services.ingest_key_revoke(key=key)
        return Response(IngestKeySerializer(key).data)
