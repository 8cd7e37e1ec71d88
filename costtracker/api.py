"""API-wide error handling: every bad input is a 400 naming the field, never a 500."""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


def exception_handler(exc, context):
    if isinstance(exc, DjangoValidationError):
        detail = (
            exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        )
        exc = exceptions.ValidationError(detail=detail)
    response = drf_exception_handler(exc, context)
    if response is None and isinstance(exc, (ValueError, OverflowError)):
        # Malformed numbers that slipped past a serializer (e.g. in a query string).
        return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
    return response
