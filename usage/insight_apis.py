"""JSON/CSV API for the dashboard's companions: forecast, reconciliation, export.

Thin: validate the query string (a 400 names the field), call one selector, shape the answer.
Money leaves as strings; a NULL cost ("unpriced") stays null/empty, never 0.
"""

from __future__ import annotations

import csv
import json
import logging
import re
from collections.abc import Iterator
from datetime import UTC, date, timedelta

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.response import Response
from rest_framework.views import APIView

from costtracker.api import DecimalStringField, MoneyField, money_str, plain_decimal
from providers.models import ProviderAccount
from providers.registry import adapter_choices
from providers.selectors import account_get_for_workspace
from usage import bounds, selectors
from usage.focus import FOCUS_HEADER, FOCUS_TEXT, FOCUS_VERSION, focus_rows_formatted
from usage.models import TOKEN_FIELDS, UNIT_FIELDS, Source
from usage.raw_history import HEADER as RAW_HISTORY_HEADER
from usage.raw_history import raw_history_header, raw_history_notice
from usage.services.reconciliation import invoice_delete, invoice_set

logger = logging.getLogger(__name__)

DAYS_NOTE = "Days are UTC days; month boundaries follow the workspace's time zone."
RAW_HISTORY_HELP = (
    "Set when the range starts before the raw history: the first UTC day whose per-request "
    "(estimated) records are kept; older ones were removed by RAW_RETENTION_DAYS. Totals stay "
    "complete (they come from the daily roll-ups, and official and manual rows are kept); "
    "request lists and exports have no estimated records before it. null: nothing is missing."
)
# The same fact as a response header, for answers that are a list or a stream (exports).
RAW_HISTORY_HEADER_DOC = OpenApiParameter(
    RAW_HISTORY_HEADER,
    OpenApiTypes.DATE,
    OpenApiParameter.HEADER,
    response=True,
    description="Only when the range starts before the raw history: YYYY-MM-DD, the first "
    "UTC day whose per-request (estimated) records are kept (RAW_RETENTION_DAYS removed older "
    "ones; totals stay complete).",
)


def raw_history_field() -> serializers.DateField:
    """The `raw_history_start` field of a JSON answer about a range (RAW_HISTORY_HELP)."""
    return serializers.DateField(allow_null=True, help_text=RAW_HISTORY_HELP)


_MONTH_RE = re.compile(r"^(\d{4})-(\d{2})$")


def parse_month(raw: str | None, *, today: date) -> date:
    """'YYYY-MM' -> first day of that month; None/'' -> the month of `today`."""
    if not raw:
        return today.replace(day=1)
    match = _MONTH_RE.match(raw.strip())
    if not match or not 1 <= int(match[2]) <= 12 or int(match[1]) < 2000:
        raise serializers.ValidationError({"month": "Use YYYY-MM, e.g. 2026-11."})
    return date(int(match[1]), int(match[2]), 1)


class ProjectionPointOutput(serializers.Serializer):
    date = serializers.DateField()
    amount = MoneyField()


class ForecastOutput(serializers.Serializer):
    month = serializers.CharField(help_text="YYYY-MM")
    today = serializers.DateField()
    time_zone = serializers.CharField()
    month_to_date = MoneyField()
    projected_total = MoneyField()
    low = MoneyField(help_text="p10 of the projected total.")
    high = MoneyField(help_text="p90 of the projected total.")
    days_elapsed = serializers.IntegerField()
    days_in_month = serializers.IntegerField()
    method = serializers.CharField()
    daily_projection = ProjectionPointOutput(many=True)
    note = serializers.CharField()


class ForecastApi(APIView):
    """Projected total spend of the workspace's current month, with its p10-p90 range."""

    @extend_schema(responses=ForecastOutput)
    def get(self, request):
        today = selectors.today_for(request.membership.workspace)
        fc = selectors.forecast_for_workspace(workspace=request.membership.workspace, today=today)
        forecast = {
            "month": f"{today:%Y-%m}",
            "today": today,
            "time_zone": request.membership.workspace.time_zone,
            "month_to_date": fc.month_to_date,
            "projected_total": fc.projected_total,
            "low": fc.low,
            "high": fc.high,
            "days_elapsed": fc.days_elapsed,
            "days_in_month": fc.days_in_month,
            "method": fc.method,
            "daily_projection": [{"date": d, "amount": v} for d, v in fc.daily_projection],
            "note": DAYS_NOTE,
        }
        return Response(ForecastOutput(forecast).data)


class ReconciliationRowOutput(serializers.Serializer):
    account = serializers.IntegerField(source="account.pk")
    account_name = serializers.CharField(source="account.name")
    provider = serializers.CharField(source="account.provider.slug")
    official = MoneyField()
    estimated = MoneyField()
    estimated_counted = MoneyField()
    manual = MoneyField()
    true_up = MoneyField(allow_null=True)
    counted = MoneyField()
    invoice = MoneyField(allow_null=True)
    reference = MoneyField(allow_null=True)
    reference_kind = serializers.SerializerMethodField()
    variance = MoneyField(allow_null=True)
    variance_pct = DecimalStringField(allow_null=True)
    unpriced_count = serializers.IntegerField()

    def get_reference_kind(self, row) -> str | None:
        return row.reference_kind or None


class ReconciliationOutput(serializers.Serializer):
    month = serializers.CharField(help_text="YYYY-MM")
    accounts = ReconciliationRowOutput(many=True)
    raw_history_start = raw_history_field()
    note = serializers.CharField()


class ReconciliationApi(APIView):
    """Per account: official, estimated, manual totals of a month next to its invoice."""

    @extend_schema(
        parameters=[OpenApiParameter("month", str, description="YYYY-MM"), RAW_HISTORY_HEADER_DOC],
        responses=ReconciliationOutput,
    )
    def get(self, request):
        today = selectors.today_for(request.membership.workspace)
        month_start = parse_month(request.query_params.get("month"), today=today)
        rows = selectors.reconciliation_month(
            workspace=request.membership.workspace, month_start=month_start
        )
        notice = raw_history_notice(start=month_start)
        reconciliation = {
            "month": f"{month_start:%Y-%m}",
            "accounts": rows,
            "raw_history_start": notice.first_kept if notice else None,
            "note": "variance = reference - counted; reference is the invoice you entered, "
            "else the official total. counted = official + estimates on days without "
            "official figures + manual entries (true-ups apart).",
        }
        return raw_history_header(Response(ReconciliationOutput(reconciliation).data), notice)


# --- invoices ----------------------------------------------------------------------------


class InvoiceSerializer(serializers.Serializer):
    month = serializers.CharField(source="month_key", read_only=True, help_text="YYYY-MM")
    amount = MoneyField(
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
        account = account_get_for_workspace(workspace=request.membership.workspace, pk=pk)
        invoices = selectors.invoice_list(account=account)
        return Response(InvoiceSerializer(invoices, many=True).data)


class AccountInvoiceApi(APIView):
    """One account's invoice total for one month: read, set (PUT replaces) or remove."""

    def _month(self, request, month: str) -> date:
        return parse_month(month or "-", today=selectors.today_for(request.membership.workspace))

    @extend_schema(parameters=[_MONTH_PATH], responses=InvoiceSerializer)
    def get(self, request, pk, month):
        account = account_get_for_workspace(workspace=request.membership.workspace, pk=pk)
        invoice = selectors.invoice_get(account=account, month_start=self._month(request, month))
        if invoice is None:
            raise NotFound("No invoice total for this month.")
        return Response(InvoiceSerializer(invoice).data)

    @extend_schema(parameters=[_MONTH_PATH], request=InvoiceSerializer, responses=InvoiceSerializer)
    def put(self, request, pk, month):
        account = account_get_for_workspace(workspace=request.membership.workspace, pk=pk)
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
        account = account_get_for_workspace(workspace=request.membership.workspace, pk=pk)
        if not invoice_delete(account=account, month_start=self._month(request, month)):
            raise NotFound("No invoice total for this month.")
        return Response(status=204)


# --- export ------------------------------------------------------------------------------

EXPORT_FORMATS = [("csv", "CSV"), ("json", "JSON"), ("focus", "FinOps FOCUS CSV")]

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
_DECIMALS = {"seats", "audio_seconds", "credits"}


def _export_dict(row: tuple) -> dict:
    item = dict(zip(EXPORT_HEADER, row, strict=True))
    item["time_utc"] = item["time_utc"].astimezone(UTC).isoformat().replace("+00:00", "Z")
    for key in _DECIMALS:
        item[key] = plain_decimal(item[key]) if item[key] is not None else None
    item["cost"] = money_str(item["cost"])  # the API's one money format; None = unpriced
    return item


def spreadsheet_safe(text: str) -> str:
    """A spreadsheet runs a cell starting with = + - @ as a formula; a leading ' keeps it text.
    For free-text cells only (a negative amount starts with - and must stay a number)."""
    if text[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + text
    return text


def _csv_cell(key: str, value) -> str:
    if value is None:
        return ""
    if key == "tags":
        value = json.dumps(value, sort_keys=True)
    text = str(value)
    return spreadsheet_safe(text) if key in _TEXT or key == "tags" else text


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


def _focus_cell(key: str, value: str | None) -> str:
    if value is None:
        return ""
    return spreadsheet_safe(value) if key in FOCUS_TEXT else value


def _focus_rows(rows: Iterator[dict], *, bom: bool = False) -> Iterator[str]:
    writer = csv.writer(_Echo())
    if bom:
        yield UTF8_BOM
    yield writer.writerow(FOCUS_HEADER)
    for item in focus_rows_formatted(rows):
        yield writer.writerow([_focus_cell(key, item[key]) for key in FOCUS_HEADER])


def _focus_stream(rows: Iterator[dict], *, bom: bool = False) -> Iterator[str]:
    def marker(count: int) -> str:
        return f"ERROR: the export failed after {count} rows; this file is incomplete.\r\n"

    return _failing_loudly(_focus_rows(rows, bom=bom), marker=marker)


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


def export_response(*, workspace, filters: dict, bom: bool = False) -> StreamingHttpResponse:
    """Stream the workspace's records as CSV, a JSON array or FOCUS CSV, never holding them all
    in memory.

    ``bom``: start a CSV with a UTF-8 byte-order mark, for the download people open in Excel
    (the page's); the API's CSV stays plain UTF-8 for scripts."""
    query = {
        "workspace": workspace,
        "start": filters["start"],
        "end": filters["end"],
        "provider": filters.get("provider") or None,
        "account_id": filters.get("account") or None,
        "source": filters.get("source") or None,
        "model": filters.get("model") or None,
    }
    fmt = filters.get("format") or "csv"
    name = f"usage-{filters['start']:%Y-%m-%d}-to-{filters['end']:%Y-%m-%d}"
    if fmt == "focus":
        # Unpriced records are left out of FOCUS data (its costs cannot be null, and an
        # unpriced cost is never 0): usage/focus.py. The header says how many.
        omitted = selectors.focus_unpriced_count(**query)
        response = StreamingHttpResponse(
            _focus_stream(selectors.focus_rows(**query), bom=bom),
            content_type="text/csv; charset=utf-8",
        )
        response["X-Unpriced-Records-Omitted"] = str(omitted)
        name += "-focus.csv"
    elif fmt == "json":
        rows = selectors.export_rows(**query)
        response = StreamingHttpResponse(_json_stream(rows), content_type="application/json")
        name += ".json"
    else:
        rows = selectors.export_rows(**query)
        response = StreamingHttpResponse(
            _csv_stream(rows, bom=bom), content_type="text/csv; charset=utf-8"
        )
        name += ".csv"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    response["Cache-Control"] = "no-store"
    # Said in a header: the stream itself stays plain CSV / a JSON array.
    notice = raw_history_notice(start=filters["start"], source=query["source"])
    return raw_history_header(response, notice)


class ExportFilterSerializer(serializers.Serializer):
    format = serializers.ChoiceField(
        choices=EXPORT_FORMATS,
        default="csv",
        help_text="csv: one row per record; json: the same as an array; focus: FinOps FOCUS "
        f"{FOCUS_VERSION} CSV (priced records only; superseded estimates left out).",
    )
    start = serializers.DateField(required=False, help_text="UTC day, inclusive; default: 1st.")
    end = serializers.DateField(required=False, help_text="UTC day, inclusive; default: today.")
    provider = serializers.ChoiceField(choices=adapter_choices(), required=False)
    account = serializers.IntegerField(min_value=1, required=False)
    source = serializers.ChoiceField(choices=Source.choices, required=False)
    model = serializers.CharField(required=False, max_length=200)

    def __init__(self, *args, workspace=None, **kwargs):
        # `user` scopes the account check; the schema generator builds one without it.
        super().__init__(*args, **kwargs)
        self.workspace = workspace

    def validate_account(self, value: int) -> int:
        # Someone else's account id reads exactly like one that does not exist.
        if not ProviderAccount.objects.filter(workspace=self.workspace, pk=value).exists():
            raise serializers.ValidationError("No such account.")
        return value

    def validate(self, attrs):
        today = selectors.today_for(self.workspace)
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


_UNIT_DECIMALS = _DECIMALS & set(UNIT_FIELDS)


def _export_row_field(name: str) -> serializers.Field:
    if name in TOKEN_FIELDS or name in ("id", "account_id"):
        return serializers.IntegerField()
    if name in _UNIT_DECIMALS:
        return DecimalStringField()
    if name in UNIT_FIELDS:
        return serializers.IntegerField()
    if name == "time_utc":
        return serializers.DateTimeField()
    if name == "cost":
        return MoneyField(allow_null=True, help_text="null: unpriced (not free).")
    if name == "tags":
        return serializers.DictField(child=serializers.CharField())
    return serializers.CharField(allow_blank=True)


# One exported record, in EXPORT_HEADER's order (documents format=json; CSV has these columns).
ExportRowOutput = type(
    "ExportRowOutput",
    (serializers.Serializer,),
    {name: _export_row_field(name) for name in EXPORT_HEADER},
)


class ExportApi(APIView):
    """Usage records of a UTC date range as CSV, JSON or FinOps FOCUS CSV, streamed."""

    content_negotiation_class = _NoFormatNegotiation

    @extend_schema(
        parameters=[ExportFilterSerializer, RAW_HISTORY_HEADER_DOC],
        responses={
            (200, "text/csv"): OpenApiResponse(
                str,
                description="format=csv (the default), or format=focus: FinOps FOCUS "
                f"{FOCUS_VERSION} columns, then x_ columns (README: FOCUS export). "
                "Header X-Unpriced-Records-Omitted: records left out for want of a price.",
            ),
            (200, "application/json"): OpenApiResponse(
                ExportRowOutput(many=True), description="format=json"
            ),
        },
    )
    def get(self, request):
        filters = ExportFilterSerializer(
            data=request.query_params, workspace=request.membership.workspace
        )
        filters.is_valid(raise_exception=True)
        return export_response(
            workspace=request.membership.workspace, filters=filters.validated_data
        )
