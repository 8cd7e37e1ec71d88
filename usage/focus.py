"""The FinOps FOCUS 1.2 shape of usage records (``GET /api/export?format=focus``).

What a FOCUS row says about one record (``selectors.focus_rows``): FOCUS columns first, in
FOCUS_COLUMNS' order, then this tracker's own ``x_`` columns. Every value leaves as text:
datetimes UTC ``YYYY-MM-DDTHH:MM:SSZ`` (start inclusive, end exclusive), numbers plain decimals
(no exponent, no ``+``), money in the API's one format (costtracker.api.money_str), None for
NULL. The streaming, CSV writing and spreadsheet guard are the export's (usage/insight_apis.py).
Reference: /work/shared/reference/focus.md (FOCUS_Spec v1.2, specification/columns/*.md).

Choices, each explained in the README's "FOCUS export" section:

- Unpriced records are left out (the selector): FOCUS's cost columns MUST NOT be null, and
  an unpriced cost is never 0. The response's ``X-Unpriced-Records-Omitted`` header counts them.
- Estimates that official figures supersede are left out, as every total leaves them out: a
  FinOps tool sums BilledCost, and they would be counted twice.
- All four costs are the record's cost: the tracker knows one amount per record (the
  provider's figure, the price book's list-price estimate, or what a person entered) and no
  negotiated discounts or amortised commitments.
- ChargePeriod: a synced or manual record (a UTC day's bucket) covers that day; a per-request
  record covers the second it happened in: FOCUS's charge period is the effective period of
  the charge, and a request's is its instant, the smallest slice the seconds-precision format
  can state with start < end.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta

from costtracker.api import money_str, plain_decimal
from usage.models import COUNTED_TOKEN_FIELDS, Granularity, Source

FOCUS_VERSION = "1.2"

FOCUS_COLUMNS = (
    "BilledCost",
    "EffectiveCost",
    "ListCost",
    "ContractedCost",
    "BillingAccountId",
    "BillingAccountName",
    "BillingCurrency",
    "BillingPeriodStart",
    "BillingPeriodEnd",
    "ChargePeriodStart",
    "ChargePeriodEnd",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "ChargeFrequency",
    "PricingQuantity",
    "PricingUnit",
    "ConsumedQuantity",
    "ConsumedUnit",
    "ProviderName",
    "PublisherName",
    "InvoiceIssuerName",
    "ServiceName",
    "ServiceCategory",
    "ServiceSubcategory",
    "ResourceId",
    "ResourceName",
    "ResourceType",
    "SkuId",
    "Tags",
)
# Custom columns: FOCUS requires the x_ prefix and wants them after its own.
X_COLUMNS = (
    "x_Source",
    "x_Granularity",
    "x_Status",
    "x_RecordId",
    "x_Provider",
    "x_Model",
    "x_LineItem",
    "x_RequestId",
    "x_InputTokens",
    "x_CachedInputTokens",
    "x_CacheWriteTokens",
    "x_CacheWrite1hTokens",
    "x_OutputTokens",
    "x_ReasoningTokens",
    "x_Requests",
)
FOCUS_HEADER = (*FOCUS_COLUMNS, *X_COLUMNS)
# Free text a person or a provider typed: the export's spreadsheet guard applies to these.
FOCUS_TEXT = frozenset(
    {
        "BillingAccountName",
        "ChargeDescription",
        "ResourceName",
        "SkuId",
        "x_Model",
        "x_LineItem",
        "x_RequestId",
    }
)
FOCUS_DECIMALS = frozenset(
    {"BilledCost", "EffectiveCost", "ListCost", "ContractedCost", "PricingQuantity"}
    | {"ConsumedQuantity"}
)
FOCUS_DATETIMES = frozenset(
    {"BillingPeriodStart", "BillingPeriodEnd", "ChargePeriodStart", "ChargePeriodEnd"}
)

SERVICE_CATEGORY = "AI and Machine Learning"
SERVICE_SUBCATEGORY = "Generative AI"
RESOURCE_TYPE = "Provider account"

# The record's quantity and its FOCUS unit, first that is non-zero: tokens (input, cached
# input, cache writes, output), then the other counts a record bills by.
_QUANTITIES = (
    ("seats", "Seats"),
    ("audio_seconds", "Seconds"),
    ("images", "Images"),
    ("search_queries", "Queries"),
    ("credits", "Credits"),
    ("request_count", "Requests"),
)
_X_TOKENS = {
    "x_InputTokens": "input_tokens",
    "x_CachedInputTokens": "cache_read_tokens",
    "x_CacheWriteTokens": "cache_write_tokens",
    "x_CacheWrite1hTokens": "cache_write_1h_tokens",
    "x_OutputTokens": "output_tokens",
    "x_ReasoningTokens": "reasoning_tokens",
    "x_Requests": "request_count",
}


def focus_datetime(value: datetime) -> str:
    return f"{value.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"


def charge_period(*, bucket_start: datetime, granularity: str) -> tuple[datetime, datetime]:
    """[start, end) of the slice a record covers: its UTC day, or the second of a request."""
    at = bucket_start.astimezone(UTC)
    if granularity == Granularity.EVENT:
        start = at.replace(microsecond=0)
        return start, start + timedelta(seconds=1)
    start = datetime(at.year, at.month, at.day, tzinfo=UTC)
    return start, start + timedelta(days=1)


def billing_period(charge_start: datetime) -> tuple[datetime, datetime]:
    """The calendar month (UTC) a charge starts in: [1st 00:00, next 1st 00:00)."""
    start = datetime(charge_start.year, charge_start.month, 1, tzinfo=UTC)
    following = start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)
    return start, following


def charge_category(row: Mapping) -> tuple[str, str]:
    """(ChargeCategory, ChargeFrequency): a true-up is an Adjustment; a fixed charge (the
    selectors' FIXED_CHARGE: manual entries, synced seat lines) a Purchase; the rest Usage."""
    if row["true_up"]:
        return "Adjustment", "One-Time"
    if row["fixed_charge"]:
        return "Purchase", "One-Time" if row["source"] == Source.MANUAL else "Recurring"
    return "Usage", "Usage-Based"


def _quantity(row: Mapping) -> tuple[str | None, str | None]:
    tokens = sum(row[f] for f in COUNTED_TOKEN_FIELDS)
    if tokens:
        return str(tokens), "Tokens"
    for field, unit in _QUANTITIES:
        if row[field]:
            return plain_decimal(row[field]), unit
    return None, None


def _tags(tags: Mapping | None) -> str | None:
    """Tags as FOCUS's key-value format: one flat JSON object (a nested value becomes its JSON
    text); None when the record has none."""
    if not tags:
        return None
    flat = {
        str(k): v if v is None or isinstance(v, str | int | float | bool) else json.dumps(v)
        for k, v in tags.items()
    }
    return json.dumps(flat, sort_keys=True, ensure_ascii=False)


def focus_row(row: Mapping) -> dict[str, str | None]:
    """One selector row (selectors.FOCUS_READS) as FOCUS_HEADER's values."""
    start, end = charge_period(bucket_start=row["bucket_start"], granularity=row["granularity"])
    period_start, period_end = billing_period(start)
    category, frequency = charge_category(row)
    quantity, unit = _quantity(row)
    cost = money_str(row["cost"])  # never None here: the selector leaves unpriced rows out
    provider = row["provider__name"]
    item = {
        "BilledCost": cost,
        "EffectiveCost": cost,
        "ListCost": cost,
        "ContractedCost": cost,
        "BillingAccountId": str(row["account_id"]),
        "BillingAccountName": row["account__name"],
        "BillingCurrency": row["currency"],
        "BillingPeriodStart": focus_datetime(period_start),
        "BillingPeriodEnd": focus_datetime(period_end),
        "ChargePeriodStart": focus_datetime(start),
        "ChargePeriodEnd": focus_datetime(end),
        "ChargeCategory": category,
        # "Correction" is for fixing an earlier, already invoiced billing period; a true-up is
        # booked in the very month it trues up.
        "ChargeClass": None,
        "ChargeDescription": row["description"] or row["line_item"] or row["model"] or None,
        "ChargeFrequency": frequency,
        "PricingQuantity": quantity,
        "PricingUnit": unit,
        # FOCUS: ConsumedQuantity is for Usage rows only.
        "ConsumedQuantity": quantity if category == "Usage" else None,
        "ConsumedUnit": unit if category == "Usage" else None,
        "ProviderName": provider,
        "PublisherName": provider,
        "InvoiceIssuerName": provider,
        "ServiceName": provider,
        "ServiceCategory": SERVICE_CATEGORY,
        "ServiceSubcategory": SERVICE_SUBCATEGORY,
        "ResourceId": str(row["account_id"]),
        "ResourceName": row["account__name"],
        "ResourceType": RESOURCE_TYPE,
        "SkuId": row["model"] or None,
        "Tags": _tags(row["tags"]),
        "x_Source": row["source"],
        "x_Granularity": row["granularity"],
        "x_Status": row["status"],
        "x_RecordId": str(row["id"]),
        "x_Provider": row["provider__slug"],
        "x_Model": row["model"] or None,
        "x_LineItem": row["line_item"] or None,
        "x_RequestId": row["request_id"] or None,
        **{column: str(row[field]) for column, field in _X_TOKENS.items()},
    }
    return {column: item[column] for column in FOCUS_HEADER}


def focus_rows_formatted(rows: Iterator[Mapping]) -> Iterator[dict[str, str | None]]:
    for row in rows:
        yield focus_row(row)
