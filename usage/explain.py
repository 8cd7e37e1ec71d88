"""Explain a cost: how one usage record's figure came about (issue 12 point 4).

A read: nothing is written. For an estimated record the explanation is the itemised cost the
pricing code itself produces (usage.pricing.Costing, through the provider's adapter), priced
with the price book as it is now; its lines are exactly what the cost adds up. When that differs
from the stored cost (priced under an older row, or before a price was added), both are shown.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.urls import reverse

from usage.models import Price, RecordStatus, Source, UsageRecord
from usage.pricing import TOKEN_CATEGORIES, CostLine, Rule, prompt_tokens

PER_MILLION = Decimal(1_000_000)

CATEGORY_LABELS = {
    "input": "Uncached input tokens",
    "cache_read": "Cache reads",
    "cache_write": "Cache writes (5 min)",
    "cache_write_1h": "Cache writes (1 h)",
    "output": "Output tokens (incl. reasoning)",
    "output_excl_reasoning": "Output tokens (excl. reasoning)",
    "reasoning": "Reasoning tokens (priced apart)",
    "request_fee": "Request fee",
    "search": "Search queries",
    "search_per_request": "Search fee (once per request)",
    "image": "Images",
    "audio_second": "Audio seconds",
    "provider_cost": "The provider's own figure",
    "compute_time": "Compute time",
    "premium_request": "Premium requests",
}
# Price row field that prices each category, to name it when it is missing.
_PRICE_FIELD_LABELS = {
    "input": "input price per token",
    "cache_read": "cache read price",
    "cache_write": "cache write price",
    "cache_write_1h": "1-hour cache write price",
    "output": "output price per token",
    "output_excl_reasoning": "output price per token",
    "reasoning": "reasoning price per token",
    "search": "search price",
    "search_per_request": "search price",
    "image": "price per image",
    "audio_second": "price per audio second",
}

RULE_SUMMARIES = {
    Rule.PRICE_BOOK: "Priced from the price book: each usage category × its unit price.",
    Rule.NO_PRICE: "Unpriced: the price book has no price for this model at the request's time.",
    Rule.PROVIDER_COST: (
        "The provider's own figure: its response carried the request's cost, which is used "
        "instead of the price book."
    ),
    Rule.FREE: "Free by this provider's rule.",
    Rule.COMPUTE_RATE: "A local model: its run time × the account's compute rate per hour.",
    Rule.PER_REQUEST: (
        "Billed per request, not by tokens: the request count × the price row's per-request price."
    ),
}


@dataclass(frozen=True)
class ExplainedLine:
    category: str
    label: str
    count: int | Decimal
    unit: str  # "per M tokens", "per hour", "each"
    unit_price: Decimal | None  # as stored: per token, per hour, per unit
    amount: Decimal | None
    formula: str  # "1,000 × $0.075/M"


@dataclass(frozen=True)
class PriceRowInfo:
    id: int
    model: str
    valid_from: datetime
    valid_to: datetime | None
    origin: str
    long_context_threshold: int | None
    long_context_applied: bool
    admin_url: str


@dataclass
class Explanation:
    record: UsageRecord
    kind: str  # the record's source: estimated, official, manual
    summary: str
    rule: str = ""
    notes: list[str] = field(default_factory=list)
    lines: list[ExplainedLine] = field(default_factory=list)
    lines_total: Decimal | None = None  # the exact sum of the lines (None: unpriced)
    current_cost: Decimal | None = None  # what the rule gives today, rounded as stored
    matches_current: bool = True
    arithmetic: str = ""
    price_row: PriceRowInfo | None = None
    add_price_url: str | None = None
    reprice_command: str | None = None
    official: dict[str, Any] | None = None
    manual: dict[str, Any] | None = None

    @property
    def stored_cost(self) -> Decimal | None:
        return self.record.cost


def plain(value: int | Decimal) -> str:
    """A number in full, without exponent or trailing zeros: 1,200 · 0.075 · 12.5."""
    return f"{value:,}" if isinstance(value, int) else f"{value.normalize():,f}"


def dollars(value: Decimal) -> str:
    """Exact dollars for the arithmetic (no rounding: display rounding is the money filter's)."""
    return f"-${plain(-value)}" if value < 0 else f"${plain(value)}"


def _explain_line(line: CostLine) -> ExplainedLine:
    category, count, unit_price, amount = line
    if category in TOKEN_CATEGORIES:
        unit = "per M tokens"
        price_text = None if unit_price is None else f"{dollars(unit_price * PER_MILLION)}/M"
    elif category == "compute_time":
        unit = "per hour"
        price_text = None if unit_price is None else f"{dollars(unit_price)}/h"
    else:
        unit = "each"
        price_text = None if unit_price is None else dollars(unit_price)
    if category == "provider_cost":
        formula = f"{dollars(amount)} (the provider's own figure)"
    else:
        counted = f"{plain(count)} s" if category == "compute_time" else plain(count)
        formula = f"{counted} × {price_text or '(no price)'}"
    return ExplainedLine(
        category=category,
        label=CATEGORY_LABELS.get(category, category),
        count=count,
        unit=unit,
        unit_price=unit_price,
        amount=amount,
        formula=formula,
    )


def add_price_url(record: UsageRecord) -> str:
    """The admin's add-price page, prefilled (GET initial data) with provider and model."""
    from urllib.parse import urlencode

    query = urlencode({"provider": record.provider_id, "model": record.model})
    return f"{reverse('admin:usage_price_add')}?{query}"


def _row_info(row: Price, *, long_context: bool) -> PriceRowInfo:
    return PriceRowInfo(
        id=row.pk,
        model=row.model,
        valid_from=row.valid_from,
        valid_to=row.valid_to,
        origin=row.origin,
        long_context_threshold=row.long_context_threshold,
        long_context_applied=long_context,
        admin_url=reverse("admin:usage_price_change", args=[row.pk]),
    )


def _explain_estimated(record: UsageRecord) -> Explanation:
    from usage.services.prices import PriceBook, price_rule, usage_from_record
    from usage.services.requests import request_costing, stored_cost

    e = Explanation(record=record, kind=Source.ESTIMATED, summary="")
    inputs = (record.raw or {}).get("pricing") or {}
    if record.status == RecordStatus.FAILED:
        e.summary = "A failed call: the provider rejected it and billed nothing, so it costs $0."
        e.current_cost = Decimal(0)
        e.lines_total = Decimal(0)
        e.matches_current = record.cost == 0
        e.arithmetic = "failed call = $0"
        return e
    if record.status == RecordStatus.INCOMPLETE and not inputs.get("usage_found", True):
        e.summary = (
            "Unpriced: the call was cut off before the provider reported any usage, so its "
            "cost is unknown (never a made-up $0)."
        )
        e.matches_current = record.cost is None
        return e
    usage = usage_from_record(record)
    row = PriceBook().row_for(provider=record.provider, model=record.model, at=record.bucket_start)
    costing = request_costing(
        account=record.account, usage=usage, rule=None if row is None else price_rule(row)
    )
    e.rule = costing.rule
    e.summary = costing.note or RULE_SUMMARIES[costing.rule]
    if record.status == RecordStatus.INCOMPLETE:
        e.notes.append(
            "The call was cut off (a stream that ended early): it is priced on the usage the "
            "provider had reported by then."
        )
    e.lines = [_explain_line(line) for line in costing.lines]
    e.lines_total = costing.total
    try:
        e.current_cost = stored_cost(costing.total)
    except ValueError:
        e.current_cost = None
        e.notes.append("The figure is outside the storable cost bound: recorded as unpriced.")
    if row is not None and costing.rule in (Rule.PRICE_BOOK, Rule.PER_REQUEST):
        e.price_row = _row_info(row, long_context=costing.long_context)
        if costing.long_context:
            e.notes.append(
                f"Long-context tier: the prompt ({prompt_tokens(usage):,} tokens incl. cached) "
                f"is past the price row's threshold of {row.long_context_threshold:,} tokens, "
                "so every token category is priced at its long-context rate."
            )
    if costing.rule == Rule.NO_PRICE:
        when = record.bucket_start.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
        e.summary = (
            f"Unpriced: the price book has no price for model “{record.model or '(none)'}” of "
            f"{record.provider.name} at {when}. Add a price, then re-price."
        )
        e.add_price_url = add_price_url(record)
    elif costing.total is None:
        missing = sorted(
            {
                _PRICE_FIELD_LABELS.get(ln.category, ln.category)
                for ln in costing.lines
                if ln[3] is None
            }
        )
        which = f"price row #{row.pk}" if row else "the price row"
        e.notes.append(
            f"Unpriced: {which} has no {', '.join(missing)}, and this request "
            "counted that category. Set it on the price row, then re-price."
        )
    if e.lines:
        total = "unpriced" if costing.total is None else dollars(costing.total)
        e.arithmetic = " + ".join(line.formula for line in e.lines) + f" = {total}"
    elif costing.rule == Rule.FREE:
        e.arithmetic = "= $0"
    if costing.total is not None and e.current_cost is not None and e.current_cost != costing.total:
        e.notes.append(f"Stored rounded to 12 decimal places: {dollars(e.current_cost)}.")
    e.matches_current = e.current_cost == record.cost
    if not e.matches_current or e.add_price_url or costing.total is None:
        day = record.bucket_start.astimezone(UTC).date().isoformat()
        e.reprice_command = f"python manage.py reprice --since {day}"
    return e


def usage_record_explain(*, record: UsageRecord) -> Explanation:
    """How `record`'s cost came about; `record` must already be one the reader may see."""
    if record.source == Source.ESTIMATED:
        return _explain_estimated(record)
    day = record.bucket_start.astimezone(UTC).date()
    if record.source == Source.OFFICIAL:
        return Explanation(
            record=record,
            kind=Source.OFFICIAL,
            summary=(
                "An official figure from the provider's own usage or cost report, synced for "
                "one UTC day. It is what the provider billed and is never re-priced."
            ),
            lines_total=record.cost,
            current_cost=record.cost,
            official={"line_item": record.line_item, "day": day, "raw": record.raw},
        )
    return Explanation(
        record=record,
        kind=record.source,
        summary=(
            "A manual entry: a figure entered by hand (an invoice, seats, a local run). It is "
            "never re-priced."
        ),
        lines_total=record.cost,
        current_cost=record.cost,
        manual={
            "workspace": record.account.workspace.name,
            "note": record.description,
            "day": day,
            "created_at": record.created_at,
            "updated_at": record.updated_at,
        },
    )
