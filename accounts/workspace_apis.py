"""JSON API for workspaces. Every other API acts in one workspace: the one named by the
`X-Workspace` header (an id from GET /api/workspaces), else the caller's personal workspace
(accounts.access)."""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import services
from accounts.models import INVITABLE_ROLES, Membership, Role


class MembershipOutput(serializers.Serializer):
    workspace = serializers.IntegerField(source="workspace_id", help_text="Send as X-Workspace.")
    name = serializers.CharField(source="workspace.name")
    time_zone = serializers.CharField(source="workspace.time_zone")
    personal = serializers.BooleanField(source="workspace.is_personal")
    role = serializers.ChoiceField(choices=Role.choices)


class WorkspaceListApi(APIView):
    """The workspaces you belong to, with your role in each."""

    @extend_schema(responses=MembershipOutput(many=True))
    def get(self, request):
        memberships = (
            Membership.objects.filter(user=request.user)
            .select_related("workspace")
            .order_by("workspace__name", "workspace_id")
        )
        return Response(MembershipOutput(memberships, many=True).data)


class MemberOutput(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField(source="user.username")
    role = serializers.ChoiceField(choices=Role.choices)
    created_at = serializers.DateTimeField()


class MemberListApi(APIView):
    """The members of the request's workspace and their roles (every member may read it)."""

    @extend_schema(responses=MemberOutput(many=True))
    def get(self, request):
        members = request.membership.workspace.memberships.select_related("user").order_by(
            "user__username"
        )
        return Response(MemberOutput(members, many=True).data)


class InviteCreateApi(APIView):
    """Invite someone to the request's workspace (owners): the link is in this response only."""

    required_roles = {"POST": Role.OWNER}

    class InputSerializer(serializers.Serializer):
        role = serializers.ChoiceField(choices=INVITABLE_ROLES)
        email = serializers.EmailField(required=False, allow_blank=True, default="")

        class Meta:
            ref_name = "InviteInput"

    class OutputSerializer(serializers.Serializer):
        url = serializers.CharField(help_text="The invite link. Shown only once.")
        role = serializers.CharField()
        email = serializers.CharField()
        expires_at = serializers.DateTimeField()

        class Meta:
            ref_name = "InviteCreated"

    @extend_schema(request=InputSerializer, responses={201: OutputSerializer})
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)

        def link(raw: str) -> str:
            return request.build_absolute_uri(reverse("invite-accept", args=[raw]))

        try:
            raw, invite = services.invite_create(
                workspace=request.membership.workspace,
                created_by=request.user,
                accept_url=link,
                **data.validated_data,
            )
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.message_dict) from exc
        body = {
            "url": link(raw),
            "role": invite.role,
            "email": invite.email,
            "expires_at": invite.expires_at,
        }
        response = Response(self.OutputSerializer(body).data, status=status.HTTP_201_CREATED)
        response["Cache-Control"] = "no-store"
        return response
