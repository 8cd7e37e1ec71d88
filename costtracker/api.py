"""What every JSON API of the app shares: how money and numbers leave, how errors look.

Money: every money figure in every API response is a plain decimal string with exactly 12
decimal places (the stored columns' precision), e.g. "0.000000000000" or "12.500000000000".
Never an exponent ("0E-12"), never a float; null means "unpriced". `money_str` is the one
function that makes that string and `MoneyField` the one serializer field that uses it.

Errors: every 4xx/5xx under /api/ is JSON: {"detail": "..."} or, for bad input, an object
naming each field ({"amount": ["..."]}). A server error says only {"detail": "Server error."}.
"""

from __future__ import annotations

import re
from decimal import Context, Decimal

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

MONEY_PLACES = 12
MONEY_QUANTUM = Decimal(1).scaleb(-MONEY_PLACES)
MONEY_PATTERN = r"^-?\d+\.\d{12}$"
MONEY_EXAMPLE = "12.500000000000"
DECIMAL_PATTERN = r"^-?\d+(\.\d+)?$"
# Wide enough for any value a column can hold (and more): formatting never fails on a read.
_WIDE = Context(prec=200)
_MONEY_RE = re.compile(MONEY_PATTERN)


def money_str(value: Decimal | int | str | None) -> str | None:
    """Money for JSON: a plain decimal string with exactly 12 places; None stays None."""
    if value is None:
        return None
    return format(Decimal(value).quantize(MONEY_QUANTUM, context=_WIDE), "f")


def plain_decimal(value: Decimal | None) -> str:
    """Export form of a number: no exponent, no trailing zeros; None -> ""."""
    if value is None:
        return ""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def decimal_str(value: Decimal | int | str | None) -> str | None:
    """A non-money number (a percentage, a quantity) as a plain decimal string; None stays
    None. As given, without exponent: Decimal("0E+1") -> "0", Decimal("1.50") -> "1.50"."""
    if value is None:
        return None
    number = Decimal(value)
    text = format(number, "f")
    return text.lstrip("-") if number == 0 else text  # no "-0"


class MoneyField(serializers.DecimalField):
    """Money in an API: input validated like a DecimalField with the given digits and places
    (default: the columns' 28 digits, 12 places); output always `money_str` (12 places),
    whatever the input precision, and never fails on a stored value wider than the field."""

    def __init__(self, *, max_digits: int = 28, decimal_places: int = MONEY_PLACES, **kwargs):
        super().__init__(max_digits=max_digits, decimal_places=decimal_places, **kwargs)

    def to_representation(self, value):
        return money_str(value)

    def validate_precision(self, value):
        # What GET answered must be accepted back (a lossless GET -> PUT): "19.000000000000"
        # for a 2-place budget is 19.00 exactly, so trailing zeros past the places are fine.
        if self.decimal_places is not None and value.is_finite():
            exact = value.quantize(Decimal(1).scaleb(-self.decimal_places), context=_WIDE)
            if exact == value:
                value = exact
        return super().validate_precision(value)


class DecimalStringField(serializers.Field):
    """An output-only non-money decimal (a percentage): `decimal_str`."""

    def __init__(self, **kwargs):
        kwargs.setdefault("read_only", True)
        super().__init__(**kwargs)

    def to_representation(self, value):
        return decimal_str(value)


class MoneyFieldSchema(OpenApiSerializerFieldExtension):
    """Responses promise the exact money format; requests accept the field's own range."""

    target_class = MoneyField

    def map_serializer_field(self, auto_schema, direction):
        if direction == "response":
            return {
                "type": "string",
                "format": "decimal",
                "pattern": MONEY_PATTERN,
                "example": MONEY_EXAMPLE,
            }
        return auto_schema._map_serializer_field(self.target, direction, bypass_extensions=True)


class DecimalStringFieldSchema(OpenApiSerializerFieldExtension):
    target_class = DecimalStringField

    def map_serializer_field(self, auto_schema, direction):
        return {"type": "string", "format": "decimal", "pattern": DECIMAL_PATTERN}


def is_money_str(value: object) -> bool:
    """Whether `value` is in the API's one money format (for tests and checks)."""
    return isinstance(value, str) and bool(_MONEY_RE.match(value))


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
    # Anything else propagates: Django logs it with its traceback and answers through
    # handler500 (costtracker.errors), which gives /api/ a JSON body without details.
    return response


# --- OpenAPI: the error answers every operation can give ------------------------------------

ERROR_SCHEMA = {
    "type": "object",
    "properties": {"detail": {"type": "string"}},
    "required": ["detail"],
    "description": "An error: what went wrong, in one sentence. Never a traceback or secret.",
}
VALIDATION_ERROR_SCHEMA = {
    "type": "object",
    "description": (
        "Bad input: each key names a field (or `non_field_errors`, `detail`, `body`), each "
        "value says what is wrong with it (a message or a list of messages)."
    ),
    "additionalProperties": {
        "oneOf": [
            {"type": "string"},
            {"type": "array", "items": {}},
            {"type": "object"},
        ]
    },
    "minProperties": 1,
}
_ERROR_REF = {"$ref": "#/components/schemas/Error"}
_VALIDATION_REF = {"$ref": "#/components/schemas/ValidationError"}
_ERROR_DESCRIPTIONS = {
    "400": ("Bad input; the body names each field.", _VALIDATION_REF),
    "401": ("Missing, invalid or expired credentials.", _ERROR_REF),
    "403": ("Not allowed (e.g. staff only, or a CSRF check failed for a session).", _ERROR_REF),
    "404": ("No such object, or it is not yours.", _ERROR_REF),
    "405": ("Method not allowed.", _ERROR_REF),
    "413": ("Request body too large; the body names the limit.", _VALIDATION_REF),
    "415": ("Unsupported request media type.", _ERROR_REF),
}
_BODY_METHODS = {"post", "put", "patch"}


def _error_response(code: str) -> dict:
    description, schema = _ERROR_DESCRIPTIONS[code]
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_WORKSPACE_PARAMETER = {
    "in": "header",
    "required": False,
    "schema": {"type": "integer"},
    "description": "The workspace to act in: an id from GET /api/workspaces. Default: your "
    "personal workspace. One you are not a member of answers 404; a role too low for the "
    "operation answers 403.",
}


def postprocess_error_responses(result, generator, request, public):
    """Also: the X-Workspace header on every operation a user's token or session calls.
    Document the JSON errors DRF and our handlers give, on every operation that can give
        them: 400 where there is input (a body, a query, a path part other than an id), 401/403
        where credentials are needed, 404 where the path names an object, 415 where there is a
        body. An operation's own annotation wins."""
    components = result.setdefault("components", {}).setdefault("schemas", {})
    components.setdefault("Error", ERROR_SCHEMA)
    components.setdefault("ValidationError", VALIDATION_ERROR_SCHEMA)
    from accounts.access import WORKSPACE_HEADER  # models are loaded by now

    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            responses = operation.setdefault("responses", {})
            params = operation.get("parameters", [])
            codes = []
            if "requestBody" in operation or method in _BODY_METHODS:
                codes += ["400", "415"]
            elif any(p.get("in") == "query" for p in params) or any(
                # A path part that is not a plain id is parsed (e.g. a YYYY-MM month): 400.
                p.get("in") == "path" and p.get("schema", {}).get("type") == "string"
                for p in params
            ):
                codes.append("400")
            security = operation.get("security")
            if security and {} not in security:
                codes += ["401", "403"]
            if security and any("bearerToken" in s for s in security):
                # Every user-authenticated operation acts in one workspace (accounts.access).
                params = operation.setdefault("parameters", params)
                if not any(p.get("name") == WORKSPACE_HEADER for p in params):
                    params.append({**_WORKSPACE_PARAMETER, "name": WORKSPACE_HEADER})
                codes.append("404")
            if "{" in path or any(p.get("name") == "page" for p in params):
                codes.append("404")  # no such object; or DRF's "Invalid page."
            for code in codes:
                responses.setdefault(code, _error_response(code))
            for code, response in responses.items():
                # An error documented by description alone still answers with a JSON body.
                if code in _ERROR_DESCRIPTIONS and "content" not in response:
                    response["content"] = _error_response(code)["content"]
    return result
