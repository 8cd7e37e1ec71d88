"""Auth API: register, login (token), logout (revoke), me."""

from __future__ import annotations

from axes.exceptions import AxesBackendPermissionDenied
from django.conf import settings
from django.contrib.auth import authenticate
from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import permissions, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.lockout import login_succeeded
from accounts.models import ApiToken, Role, User
from accounts.services import api_token_create, api_token_revoke, user_create

TokenOutput = inline_serializer(
    "TokenOutput", {"token": serializers.CharField(), "expiry": serializers.DateTimeField()}
)


ErrorOutput = inline_serializer("DetailError", {"detail": serializers.CharField()})


class UserOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = User
        fields = ["id", "username", "email", "time_zone", "is_staff"]


class RegisterApi(APIView):
    permission_classes = [permissions.AllowAny]
    authentication_classes: list = []

    class InputSerializer(serializers.Serializer):
        username = serializers.CharField(max_length=150)
        password = serializers.CharField(write_only=True, max_length=128)
        email = serializers.EmailField(required=False, allow_blank=True)

        class Meta:
            ref_name = "RegisterInput"

        def validate_username(self, value: str) -> str:
            if User.objects.filter(username__iexact=value).exists():
                raise serializers.ValidationError("A user with that username already exists.")
            return value

    @extend_schema(
        request=InputSerializer,
        responses={201: TokenOutput, 403: OpenApiResponse(ErrorOutput, "Sign-up is disabled.")},
    )
    def post(self, request):
        if not settings.ALLOW_SIGNUP:
            return Response({"detail": "Sign-up is disabled."}, status=status.HTTP_403_FORBIDDEN)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            user = user_create(**data.validated_data)
        except DjangoValidationError as exc:
            raise serializers.ValidationError({"password": exc.messages}) from exc
        raw, token = api_token_create(user=user)
        return Response({"token": raw, "expiry": token.expires_at}, status=status.HTTP_201_CREATED)


class LoginApi(APIView):
    permission_classes = [permissions.AllowAny]
    authentication_classes: list = []

    class InputSerializer(serializers.Serializer):
        username = serializers.CharField(max_length=150)
        password = serializers.CharField(write_only=True, max_length=128)

        class Meta:
            ref_name = "LoginInput"

    @extend_schema(
        request=InputSerializer,
        responses={
            200: TokenOutput,
            429: OpenApiResponse(ErrorOutput, "Too many failed logins; try again later."),
        },
    )
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            # django-axes counts failures per username + IP through this call.
            user = authenticate(request._request, **data.validated_data)
        except AxesBackendPermissionDenied:
            return Response(
                {"detail": "Too many failed logins. Try again later."},
                status=status.HTTP_429_TOO_MANY_REQUESTS,
            )
        if user is None:
            return Response(
                {"detail": "Invalid username or password."}, status=status.HTTP_400_BAD_REQUEST
            )
        login_succeeded(request=request._request, user=user)
        raw, token = api_token_create(user=user)
        return Response({"token": raw, "expiry": token.expires_at})


class LogoutApi(APIView):
    required_roles = {"POST": Role.VIEWER}

    @extend_schema(request=None, responses={204: None})
    def post(self, request):
        if isinstance(request.auth, ApiToken):
            api_token_revoke(token=request.auth)
        return Response(status=status.HTTP_204_NO_CONTENT)


class MeApi(APIView):
    @extend_schema(responses=UserOutputSerializer)
    def get(self, request):
        return Response(UserOutputSerializer(request.user).data)
