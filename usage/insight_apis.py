"""JSON/CSV API for the dashboard's companions: forecast, reconciliation, export.

Thin: validate the query string (a 400 names the field), call one selector, shape the answer.
Money leaves as strings; a NULL cost ("unpriced") stays null/empty, never 0.
"""

from __future__ import annotations

import csv
import json
import logging
import re
from collections.abc import Iterable, Iterator
from datetime import UTC, date, timedelta
from decimal import Decimal

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.response import Response
from rest_framework.views import APIView

from providers.models import ProviderAccount
from providers.registry import adapter_choices
from providers.selectors import account_get_for_user
from usage import bounds, selectors
from usage.models import TOKEN_FIELDS, UNIT_FIELDS, Source
from usage.services.reconciliation import invoice_delete, invoice_set

logger = logging.getLogger(__name__)

DAYS_NOTE = "Days are UTC days; month boundaries follow your time zone."
_MONTH_RE = re.compile(r"^(\d{4})-(\d{2})$")


def money_str(value: Decimal | None) -> str | None:
    """A plain decimal string (never exponent notation); None stays None."""
    return None if value is None else format(value, "f")


def plain_decimal(value: Decimal | None) -> str:
    """Export form of a number: no exponent, no trailing zeros; None -> ""."""
    if value is None:
        return ""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def parse_month(raw: str | None, *, today: date) -> date:
    """'YYYY-MM' -> first day of that month; None/'' -> the month of `today`."""
    if not raw:
        return today.replace(day=1)
    match = _MONTH_RE.match(raw.strip())
    if not match or not 1 <= int(match[2]) <= 12 or int(match[1]) < 2000:
        raise serializers.ValidationError({"month": "Use YYYY-MM, e.g. 2026-11."})
    return date(int(match[1]), int(match[2]), 1)


class ForecastApi(APIView):
    """Projected total spend of the user's current month, with its p10-p90 range."""

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request):
        today = selectors.today_for(request.user)
        fc = selectors.forecast_for_user(user=request.user, today=today)
        return Response(
            {
                "month": f"{today:%Y-%m}",
                "today": today,
                "time_zone": request.user.time_zone,
                "month_to_date": money_str(fc.month_to_date),
                "projected_total": money_str(fc.projected_total),
                "low": money_str(fc.low),
                "high": money_str(fc.high),
                "days_elapsed": fc.days_elapsed,
                "days_in_month": fc.days_in_month,
                "method": fc.method,
                "daily_projection": [
                    {"date": d, "amount": money_str(v)} for d, v in fc.daily_projection
                ],
                "note": DAYS_NOTE,
            }
        )


def reconciliation_payload(rows: Iterable[selectors.ReconciliationRow]) -> list[dict]:
    return [
        {
            "account": r.account.pk,
            "account_name": r.account.name,
            "provider": r.account.provider.slug,
            "official": money_str(r.official),
            "estimated": money_str(r.estimated),
            "estimated_counted": money_str(r.estimated_counted),
            "manual": money_str(r.manual),
            "true_up": money_str(r.true_up),
            "counted": money_str(r.counted),
            "invoice": money_str(r.invoice),
            "reference": money_str(r.reference),
            "reference_kind": r.reference_kind or None,
            "variance": money_str(r.variance),
            "variance_pct": money_str(r.variance_pct),
            "unpriced_count": r.unpriced_count,
        }
        for r in rows
    ]


class ReconciliationApi(APIView):
    """Per account: official, estimated, manual totals of a month next to its invoice."""

    @extend_schema(
        parameters=[OpenApiParameter("month", str, description="YYYY-MM")],
        responses=OpenApiTypes.OBJECT,
    )
    def get(self, request):
        today = selectors.today_for(request.user)
        month_start = parse_month(request.query_params.get("month"), today=today)
        rows = selectors.reconciliation_month(user=request.user, month_start=month_start)
        return Response(
            {
                "month": f"{month_start:%Y-%m}",
                "accounts": reconciliation_payload(rows),
                "note": "variance = reference - counted; reference is the invoice you entered, "
                "else the official total. counted = official + estimates on days without "
                "official figures + manual entries (true-ups apart).",
            }
        )


# --- invoices ----------------------------------------------------------------------------


class PlainDecimalField(serializers.DecimalField):
    """A decimal string with no exponent and no padding zeros ("123.45", "0")."""

    def to_representation(self, value):
        text = format(Decimal(value).normalize(), "f")
        return "0" if text == "-0" else text


class InvoiceSerializer(serializers.Serializer):
    month = serializers.CharField(source="month_key", read_only=True, help_text="YYYY-MM")
    amount = PlainDecimalField(
        max_digits=None,
        **bounds.INVOICE.form_kwargs(),
        help_text="What the provider billed for the month.",
    )
    currency = serializers.ChoiceField(choices=["USD"], default="USD")
    note = serializers.CharField(max_length=500, allow_blank=True, default="")
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)


_MONTH_PATH = OpenApiParameter(
    "month", str, OpenApiParameter.PATH, description="The billed month, YYYY-MM."
)


class AccountInvoiceListApi(APIView):
    """The invoice totals entered for one account, newest month first."""

    @extend_schema(responses=InvoiceSerializer(many=True))
    def get(self, request, pk):
        account = account_get_for_user(user=request.user, pk=pk)
        invoices = selectors.invoice_list(account=account)
        return Response(InvoiceSerializer(invoices, many=True).data)


class AccountInvoiceApi(APIView):
    """One account's invoice total for one month: read, set (PUT replaces) or remove."""

    def _month(self, request, month: str) -> date:
        return parse_month(month or "-", today=selectors.today_for(request.user))

    @extend_schema(parameters=[_MONTH_PATH], responses=InvoiceSerializer)
    def get(self, request, pk, month):
        account = account_get_for_user(user=request.user, pk=pk)
        invoice = selectors.invoice_get(account=account, month_start=self._month(request, month))
        if invoice is None:
            raise NotFound("No invoice total for this month.")
        return Response(InvoiceSerializer(invoice).data)

    @extend_schema(parameters=[_MONTH_PATH], request=InvoiceSerializer, responses=InvoiceSerializer)
    def put(self, request, pk, month):
        account = account_get_for_user(user=request.user, pk=pk)
        month_start = self._month(request, month)
        serializer = InvoiceSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            invoice = invoice_set(
                account=account, month_start=month_start, **serializer.validated_data
            )
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.message_dict) from exc
        return Response(InvoiceSerializer(invoice).data)

    @extend_schema(parameters=[_MONTH_PATH], request=None, responses={204: None})
    def delete(self, request, pk, month):
        account = account_get_for_user(user=request.user, pk=pk)
        if not invoice_delete(account=account, month_start=self._month(request, month)):
            raise NotFound("No invoice total for this month.")
        return Response(status=204)


# --- export ------------------------------------------------------------------------------

EXPORT_HEADER = (
    "id",
    "account_id",
    "account",
    "provider",
    "model",
    "line_item",
    "description",
    "request_id",
    "time_utc",
    "granularity",
    *TOKEN_FIELDS,
    *UNIT_FIELDS,
    "source",
    "status",
    "cost",
    "currency",
    "tags",
)
_TEXT = {"account", "model", "line_item", "description", "request_id"}
_DECIMALS = {"seats", "audio_seconds", "credits", "cost"}


def _export_dict(row: tuple) -> dict:
    item = dict(zip(EXPORT_HEADER, row, strict=True))
    item["time_utc"] = item["time_utc"].astimezone(UTC).isoformat().replace("+00:00", "Z")
    for key in _DECIMALS:
        item[key] = plain_decimal(item[key]) if item[key] is not None else None
    return item


def _csv_cell(key: str, value) -> str:
    if value is None:
        return ""
    if key == "tags":
        value = json.dumps(value, sort_keys=True)
    text = str(value)
    # A spreadsheet runs a cell starting with = + - @ as a formula; a leading ' keeps it text.
    if (key in _TEXT or key == "tags") and text[:1] in ("=", "+", "-", "@", "\t", "\r"):
        text = "'" + text
    return text


class _Echo:
    def write(self, value: str) -> str:
        return value


# Excel reads a CSV without a byte-order mark as the local ANSI code page ("–" → "â€“").
UTF8_BOM = "\ufeff"


class ExportBroken(Exception):
    """The export failed part-way; raised out of the stream so the server aborts the response
    (no terminating chunk) and the client's download fails instead of looking complete."""


def _failing_loudly(lines: Iterator[str], *, marker) -> Iterator[str]:
    """Pass `lines` on; on a failure part-way, write `marker(rows sent)` (for a person opening
    a file whose end the server could not mark) and abort the stream."""
    sent = 0
    try:
        for line in lines:
            yield line
            sent += 1
    except Exception as exc:
        logger.exception("export failed after %s lines", sent)
        yield marker(max(sent - 1, 0))
        raise ExportBroken(f"the export failed after {max(sent - 1, 0)} rows") from exc


def _csv_rows(rows: Iterator[tuple], *, bom: bool = False) -> Iterator[str]:
    writer = csv.writer(_Echo())
    if bom:
        yield UTF8_BOM
    yield writer.writerow(EXPORT_HEADER)
    for row in rows:
        item = _export_dict(row)
        yield writer.writerow([_csv_cell(k, item[k]) for k in EXPORT_HEADER])


def _csv_stream(rows: Iterator[tuple], *, bom: bool = False) -> Iterator[str]:
    def marker(count: int) -> str:
        return f"ERROR: the export failed after {count} rows; this file is incomplete.\r\n"

    return _failing_loudly(_csv_rows(rows, bom=bom), marker=marker)


def _json_rows(rows: Iterator[tuple]) -> Iterator[str]:
    yield "["
    first = True
    for row in rows:
        yield ("\n" if first else ",\n") + json.dumps(_export_dict(row), sort_keys=False)
        first = False
    yield "\n]\n"


def _json_stream(rows: Iterator[tuple]) -> Iterator[str]:
    def marker(count: int) -> str:
        # The array stays open: no JSON parser takes a cut-off export for a whole one.
        return f'\n"ERROR: the export failed after {count} rows; this file is incomplete."'

    return _failing_loudly(_json_rows(rows), marker=marker)


def export_response(*, user, filters: dict, bom: bool = False) -> StreamingHttpResponse:
    """Stream the user's records as CSV or a JSON array, never holding them all in memory.

    ``bom``: start a CSV with a UTF-8 byte-order mark, for the download people open in Excel
    (the page's); the API's CSV stays plain UTF-8 for scripts."""
    rows = selectors.export_rows(
        user=user,
        start=filters["start"],
        end=filters["end"],
        provider=filters.get("provider") or None,
        account_id=filters.get("account") or None,
        source=filters.get("source") or None,
        model=filters.get("model") or None,
    )
    fmt = filters.get("format") or "csv"
    name = f"usage-{filters['start']:%Y-%m-%d}-to-{filters['end']:%Y-%m-%d}.{fmt}"
    if fmt == "json":
        response = StreamingHttpResponse(_json_stream(rows), content_type="application/json")
    else:
        response = StreamingHttpResponse(
            _csv_stream(rows, bom=bom), content_type="text/csv; charset=utf-8"
        )
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    response["Cache-Control"] = "no-store"
    return response


class ExportFilterSerializer(serializers.Serializer):
    format = serializers.ChoiceField(choices=["csv", "json"], default="csv")
    start = serializers.DateField(required=False, help_text="UTC day, inclusive; default: 1st.")
    end = serializers.DateField(required=False, help_text="UTC day, inclusive; default: today.")
    provider = serializers.ChoiceField(choices=adapter_choices(), required=False)
    account = serializers.IntegerField(min_value=1, required=False)
    source = serializers.ChoiceField(choices=Source.choices, required=False)
    model = serializers.CharField(required=False, max_length=200)

    def __init__(self, *args, user=None, **kwargs):
        # `user` scopes the account check; the schema generator builds one without it.
        super().__init__(*args, **kwargs)
        self.user = user

    def validate_account(self, value: int) -> int:
        # Someone else's account id reads exactly like one that does not exist.
        if not ProviderAccount.objects.filter(owner=self.user, pk=value).exists():
            raise serializers.ValidationError("No such account.")
        return value

    def validate(self, attrs):
        today = selectors.today_for(self.user)
        attrs.setdefault("start", today.replace(day=1))
        attrs.setdefault("end", today)
        if attrs["start"] > attrs["end"]:
            raise serializers.ValidationError({"end": "Must not be before start."})
        if attrs["end"] - attrs["start"] > timedelta(days=3660):
            raise serializers.ValidationError({"start": "At most ten years at a time."})
        return attrs


class _NoFormatNegotiation(BaseContentNegotiation):
    """`?format=csv` picks the export format here, not a DRF renderer (which would 404)."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None


class ExportApi(APIView):
    """Usage records of a UTC date range as CSV or JSON, streamed."""

    content_negotiation_class = _NoFormatNegotiation

    @extend_schema(parameters=[ExportFilterSerializer], responses={(200, "text/csv"): str})
    def get(self, request):
        filters = ExportFilterSerializer(data=request.query_params, user=request.user)
        filters.is_valid(raise_exception=True)
        return export_response(user=request.user, filters=filters.validated_data)
