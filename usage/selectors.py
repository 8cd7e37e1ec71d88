"""Reads: totals, dashboards, history. Everything starts from a workspace and reads only its
rows (the request's workspace, reached through the reader's membership: accounts.access).

Totals come from the daily roll-up. Official supersedes estimated: for an account and UTC day
with official figures, that day's estimated rows are left out of totals (they stay visible in
history for reconciliation) rather than added on top.
"""

from __future__ import annotations

import calendar
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import TypedDict, TypeVar, Unpack

from django.db.models import (
    BooleanField,
    Case,
    Exists,
    Max,
    Model,
    OuterRef,
    Q,
    QuerySet,
    Sum,
    Value,
    When,
)
from django.db.models.functions import TruncDate
from django.utils import timezone

from accounts.models import Workspace
from providers.models import Invoice, ProviderAccount
from usage.db import MoneySum
from usage.models import (
    TOKEN_FIELDS,
    UNIT_FIELDS,
    DailyUsage,
    RawHistoryPrune,
    RollupTotals,
    Source,
    UsageRecord,
)

WARNING_PCT = Decimal(80)
CRITICAL_PCT = Decimal(100)
_TOKEN_SUMS = {f: Sum(f) for f in TOKEN_FIELDS if f != "reasoning_tokens"}
R = TypeVar("R", bound=RollupTotals)
M = TypeVar("M", bound=Model)


def today_for(workspace: Workspace, *, now: datetime | None = None) -> date:
    """The workspace's calendar date (its time zone draws day and month boundaries)."""
    return (now or timezone.now()).astimezone(workspace.zone).date()


def month_bounds(day: date) -> tuple[date, date]:
    """First day of day's month and first day of the next month (exclusive)."""
    first = day.replace(day=1)
    last = calendar.monthrange(day.year, day.month)[1]
    return first, first + timedelta(days=last)


def account_rows_visible_to(*, workspace: Workspace, model: type[M]) -> QuerySet[M]:
    """Every row of `workspace` in a table whose rows belong to a provider account (the
    roll-ups DailyUsage and DailyAttribution, ingest keys): those of its accounts. The one
    place that decides it for roll-ups and what breakdowns read."""
    return model.objects.filter(account__workspace=workspace)


def effective_rollup(
    *,
    workspace: Workspace,
    rollup: type[R],
    start: date | None = None,
    end: date | None = None,
    account_id: int | None = None,
) -> QuerySet[R]:
    """The workspace's rows of a roll-up in [start, end), with superseded estimates left out
    (official supersedes estimated). Totals of every roll-up are read through this.

    `account_id` narrows every read built on this to one account (the account page).
    """
    qs = account_rows_visible_to(workspace=workspace, model=rollup).filter(superseded=False)
    if account_id is not None:
        qs = qs.filter(account_id=account_id)
    if start:
        qs = qs.filter(day__gte=start)
    if end:
        qs = qs.filter(day__lt=end)
    return qs


def effective_daily(
    *,
    workspace: Workspace,
    start: date | None = None,
    end: date | None = None,
    account_id: int | None = None,
) -> QuerySet[DailyUsage]:
    """The workspace's DailyUsage rows in [start, end), with superseded estimates left out."""
    return effective_rollup(
        workspace=workspace, rollup=DailyUsage, start=start, end=end, account_id=account_id
    )


def budget_status(cost: Decimal, budget: Decimal | None) -> tuple[Decimal | None, str]:
    if not budget:
        return None, "ok"
    pct = (cost / budget * 100).quantize(Decimal("0.1"))
    if pct >= CRITICAL_PCT:
        return pct, "critical"
    if pct >= WARNING_PCT:
        return pct, "warning"
    return pct, "ok"


@dataclass
class AccountMonth:
    account: ProviderAccount
    cost: Decimal = Decimal(0)
    tokens: int = 0
    requests: int = 0
    unpriced_count: int = 0
    sources: set[str] = field(default_factory=set)
    budget_pct: Decimal | None = None
    status: str = "ok"


def month_summary(*, workspace: Workspace, today: date | None = None) -> list[AccountMonth]:
    """Month to date (the workspace's calendar month) per account: cost, tokens, % of budget,
    status."""
    first, next_first = month_bounds(today or today_for(workspace))
    return dashboard_summary(
        workspace=workspace, start=first, end=next_first, with_budget=True
    ).accounts


def spend_total(*, workspace: Workspace, start: date, end: date) -> Decimal:
    total = effective_daily(workspace=workspace, start=start, end=end).aggregate(
        t=MoneySum("cost")
    )["t"]
    return total or Decimal(0)


def spend_by_provider(*, workspace: Workspace, start: date, end: date) -> list[dict]:
    rows = (
        effective_daily(workspace=workspace, start=start, end=end)
        .values("provider__slug", "provider__name")
        .annotate(cost=MoneySum("cost"), unpriced=Sum("unpriced_count"), **_TOKEN_SUMS)
        .order_by("provider__name")
    )
    return [
        {
            "provider": r["provider__slug"],
            "name": r["provider__name"],
            "cost": r["cost"] or Decimal(0),
            "tokens": sum(r[f] or 0 for f in _TOKEN_SUMS),
            "unpriced_count": r["unpriced"] or 0,
        }
        for r in rows
    ]


def spend_by_day(
    *, workspace: Workspace, start: date, end: date, account_id: int | None = None
) -> list[dict]:
    """One entry per day in [start, end), zero-filled, split by source."""
    days = {start + timedelta(days=i): {} for i in range((end - start).days)}
    rows = (
        effective_daily(workspace=workspace, start=start, end=end, account_id=account_id)
        .values("day", "source")
        .annotate(cost=MoneySum("cost"), **_TOKEN_SUMS)
        .order_by()
    )
    tokens: dict[date, int] = {}
    for r in rows:
        days[r["day"]][r["source"]] = r["cost"] or Decimal(0)
        tokens[r["day"]] = tokens.get(r["day"], 0) + sum(r[f] or 0 for f in _TOKEN_SUMS)
    return [
        {
            "date": d,
            "cost": sum(by_source.values(), Decimal(0)),
            "by_source": {s: by_source.get(s, Decimal(0)) for s in Source.values},
            "tokens": tokens.get(d, 0),
        }
        for d, by_source in days.items()
    ]


def usage_history(
    *,
    workspace: Workspace,
    provider: str | None = None,
    account_id: int | None = None,
    model: str | None = None,
    source: str | None = None,
    start: date | None = None,
    end: date | None = None,
    tags: Mapping[str, str] | None = None,
    ingest_key_id: int | None = None,
) -> QuerySet[UsageRecord]:
    """Per-record history, newest first. Dates are UTC days, end inclusive; ``tags``: records
    carrying each given tag (project, user, feature) with exactly that value; ``ingest_key_id``:
    the records that ingest key wrote."""
    from usage.services.rollup import day_start

    qs = records_visible_to(workspace=workspace).select_related("account", "provider")
    if provider:
        qs = qs.filter(provider__slug=provider)
    if account_id:
        qs = qs.filter(account_id=account_id)
    if model:
        qs = qs.filter(model__icontains=model)
    if source:
        qs = qs.filter(source=source)
    if start:
        qs = qs.filter(bucket_start__gte=day_start(start))
    if end:
        qs = qs.filter(bucket_start__lt=day_start(end + timedelta(days=1)))
    for tag, value in (tags or {}).items():
        if value:
            qs = qs.filter(**{f"tags__{tag}": value})
    if ingest_key_id:
        qs = qs.filter(ingest_key_id=ingest_key_id)
    return qs.order_by("-bucket_start", "-id")


def raw_history_start() -> datetime | None:
    """Where the raw per-request history starts: records before this instant were removed
    by RAW_RETENTION_DAYS (usage.services.history.raw_history_prune). None: nothing removed.

    A range starting earlier still has its totals (the daily roll-ups, official and manual
    rows stay) but not its requests: pages and exports of it say so.
    """
    return RawHistoryPrune.objects.aggregate(start=Max("before"))["start"]


def raw_history_missing(*, start: date) -> date | None:
    """The first UTC day whose per-request records are kept, when a range beginning on
    `start` (a date) reaches before it; None when the range is wholly within the raw history."""
    cut = raw_history_start()  # always a UTC midnight: history is removed by whole months
    first_kept = None if cut is None else cut.astimezone(UTC).date()
    return first_kept if first_kept is not None and start < first_kept else None


def records_visible_to(*, workspace: Workspace) -> QuerySet[UsageRecord]:
    """Every usage record of `workspace`: those of its provider accounts. The one place record
    visibility is decided (history, a record's page and API)."""
    return UsageRecord.objects.filter(account__workspace=workspace)


def record_get_for_workspace(*, workspace: Workspace, pk) -> UsageRecord:
    """One record of the workspace (:func:`records_visible_to`); 404 for anyone else's."""
    from django.shortcuts import get_object_or_404

    qs = records_visible_to(workspace=workspace).select_related("account__workspace", "provider")
    return get_object_or_404(qs, pk=pk)


def manual_entry_get_for_workspace(*, workspace: Workspace, pk) -> UsageRecord:
    """One of the workspace's manual entries; 404 for another workspace's and for any other
    source."""
    from django.shortcuts import get_object_or_404

    qs = UsageRecord.objects.filter(account__workspace=workspace, source=Source.MANUAL)
    return get_object_or_404(qs.select_related("account__provider"), pk=pk)


# --- Dashboard, forecast, reconciliation and export reads (issue 5) -------------------------


@dataclass
class DashboardSummary:
    """Totals of one period, from one pass over the roll-up grouped by account and source."""

    accounts: list[AccountMonth]
    by_provider: list[dict]
    by_source: dict[str, Decimal]
    total: Decimal = Decimal(0)
    tokens: int = 0
    unpriced_count: int = 0
    unpriced_tokens: int = 0

    @property
    def has_usage(self) -> bool:
        return any(a.sources for a in self.accounts)


def dashboard_summary(
    *,
    workspace: Workspace,
    start: date,
    end: date,
    with_budget: bool,
    account_id: int | None = None,
) -> DashboardSummary:
    """Per account, per provider and per source totals of [start, end) (UTC days).

    `with_budget` compares each account's cost to its monthly budget; only meaningful when the
    period is one calendar month. `account_id` gives the same totals for one account.
    """
    owned = ProviderAccount.objects.filter(workspace=workspace).select_related("provider")
    if account_id is not None:
        owned = owned.filter(pk=account_id)
    accounts = {a.pk: AccountMonth(account=a) for a in owned}
    rows = (
        effective_daily(workspace=workspace, start=start, end=end, account_id=account_id)
        .values("account_id", "source")
        .annotate(
            cost_sum=MoneySum("cost"),
            unpriced=Sum("unpriced_count"),
            unpriced_tok=Sum("unpriced_tokens"),
            requests=Sum("request_count"),
            **_TOKEN_SUMS,
        )
        .order_by()
    )
    summary = DashboardSummary(
        accounts=[], by_provider=[], by_source={s: Decimal(0) for s in Source.values}
    )
    providers: dict[str, dict] = {}
    for r in rows:
        item = accounts[r["account_id"]]
        cost = r["cost_sum"] or Decimal(0)
        tokens = sum(r[f] or 0 for f in _TOKEN_SUMS)
        item.cost += cost
        item.tokens += tokens
        item.requests += r["requests"] or 0
        item.unpriced_count += r["unpriced"] or 0
        item.sources.add(r["source"])
        summary.by_source[r["source"]] += cost
        summary.unpriced_tokens += r["unpriced_tok"] or 0
        p = item.account.provider
        entry = providers.setdefault(
            p.slug,
            {
                "provider": p.slug,
                "name": p.name,
                "cost": Decimal(0),
                "tokens": 0,
                "unpriced_count": 0,
                "sources": set(),
            },
        )
        entry["cost"] += cost
        entry["tokens"] += tokens
        entry["unpriced_count"] += r["unpriced"] or 0
        entry["sources"].add(r["source"])
    for item in accounts.values():
        if with_budget:
            item.budget_pct, item.status = budget_status(item.cost, item.account.monthly_budget)
        summary.total += item.cost
        summary.tokens += item.tokens
        summary.unpriced_count += item.unpriced_count
    summary.accounts = list(accounts.values())
    for p in providers.values():
        p["sources"] = sorted(p["sources"])
    summary.by_provider = sorted(providers.values(), key=lambda p: (-p["cost"], p["name"]))
    return summary


def top_models(
    *, workspace: Workspace, start: date, end: date, limit: int = 10, account_id: int | None = None
) -> list[dict]:
    """The models that cost most in [start, end), with tokens, requests and sources."""
    rows = (
        effective_daily(workspace=workspace, start=start, end=end, account_id=account_id)
        .values("provider_id", "model", "source")
        .annotate(
            cost=MoneySum("cost"),
            unpriced=Sum("unpriced_count"),
            requests=Sum("request_count"),
            **_TOKEN_SUMS,
        )
        .order_by()
    )
    merged: dict[tuple, dict] = {}
    for r in rows:
        m = merged.setdefault(
            (r["provider_id"], r["model"]),
            {
                "provider_id": r["provider_id"],
                "model": r["model"],
                "cost": Decimal(0),
                "tokens": 0,
                "requests": 0,
                "unpriced_count": 0,
                "sources": set(),
            },
        )
        m["cost"] += r["cost"] or Decimal(0)
        m["tokens"] += sum(r[f] or 0 for f in _TOKEN_SUMS)
        m["requests"] += r["requests"] or 0
        m["unpriced_count"] += r["unpriced"] or 0
        m["sources"].add(r["source"])
    ranked = sorted(merged.values(), key=lambda m: (-m["cost"], -m["tokens"], m["model"]))[:limit]
    unnamed = {m["provider_id"] for m in ranked if not m["model"]}
    labels = _unnamed_model_labels(workspace=workspace, start=start, end=end, provider_ids=unnamed)
    for m in ranked:
        m["sources"] = sorted(m["sources"])
        m["label"] = m["model"] or labels.get(m["provider_id"], "")
    return ranked


def _unnamed_model_labels(
    *, workspace: Workspace, start: date, end: date, provider_ids: set[int], shown: int = 2
) -> dict[int, str]:
    """What the records without a model say they are (a seat charge, an invoice), per provider:
    their descriptions (else line items), most recent first, at most `shown` then "+N more"."""
    from usage.services.rollup import day_start

    if not provider_ids:
        return {}
    rows = (
        UsageRecord.objects.filter(
            account__workspace=workspace,
            provider_id__in=provider_ids,
            model="",
            bucket_start__gte=day_start(start),
            bucket_start__lt=day_start(end),
        )
        .order_by("-bucket_start", "-id")
        .values_list("provider_id", "description", "line_item")[:500]
    )
    found: dict[int, list[str]] = {}
    for provider_id, description, line_item in rows:
        text = (description or line_item or "").strip()
        names = found.setdefault(provider_id, [])
        if text and text not in names:
            names.append(text)
    labels = {}
    for provider_id, names in found.items():
        if names:
            more = len(names) - shown
            labels[provider_id] = "; ".join(names[:shown]) + (
                f" (+{more} more)" if more > 0 else ""
            )
    return labels


FORECAST_HISTORY_DAYS = 60

# --- Fixed charges versus usage-based spend ---------------------------------------------------
#
# THE rule for what is billed once (or per seat) rather than per use. Every manual entry is a
# fixed charge (seats, subscriptions, invoices, true-ups), and so is every synced line that
# bills seats (e.g. Copilot's `seats:<plan>` lines). Forecasts count fixed charges as booked
# instead of extrapolating them as a daily run-rate, and anomaly rules leave them out: a $190
# seat charge is neither a trend nor a spike. Fixed records are never estimates, so
# "official supersedes estimated" never hides one.
FIXED_CHARGE = Q(source=Source.MANUAL) | Q(source=Source.OFFICIAL, seats__gt=0)
# The sources FIXED_CHARGE can match: lets the (account, source, bucket_start) index skip the
# millions of estimated per-request records.
FIXED_CHARGE_SOURCES = (Source.MANUAL, Source.OFFICIAL)
# Synced seat lines are prorated by day (seats × monthly price ÷ days in the month): the rest of
# the month is already committed at the latest day's amount.
PRORATED_FIXED_CHARGE = Q(source=Source.OFFICIAL, seats__gt=0)


def fixed_charge_records(
    *,
    workspace: Workspace,
    start: date,
    end: date,
    provider_id: int | None = None,
    account_id: int | None = None,
) -> QuerySet[UsageRecord]:
    """The workspace's fixed-charge records on UTC days [start, end) (FIXED_CHARGE)."""
    from usage.services.rollup import day_start

    qs = UsageRecord.objects.filter(
        FIXED_CHARGE,
        account_id__in=ProviderAccount.objects.filter(workspace=workspace).values("pk"),
        source__in=FIXED_CHARGE_SOURCES,
        bucket_start__gte=day_start(start),
        bucket_start__lt=day_start(end),
    )
    if provider_id is not None:
        qs = qs.filter(provider_id=provider_id)
    if account_id is not None:
        qs = qs.filter(account_id=account_id)
    return qs


@dataclass
class SpendSplit:
    """Spend per UTC day of [start, end), split into usage-based spend and fixed charges.

    ``usage`` + ``fixed`` per day is what the roll-up counts (official supersedes estimated).
    ``recurring`` is, per prorated fixed line (account, line item), its latest day and amount.
    """

    usage: dict[date, Decimal] = field(default_factory=dict)
    fixed: dict[date, Decimal] = field(default_factory=dict)
    recurring: dict[tuple[int, str], tuple[date, Decimal]] = field(default_factory=dict)

    def total(self, day: date) -> Decimal:
        return self.usage.get(day, Decimal(0)) + self.fixed.get(day, Decimal(0))

    def committed_after(self, *, day: date, month_end: date) -> dict[date, Decimal]:
        """Prorated fixed charges still to come, per day after ``day`` up to ``month_end``.

        Each prorated line continues at its latest day's amount from the day after that (and
        never before ``day + 1``) to the end of the month it was booked in.
        """
        ahead: dict[date, Decimal] = {}
        for last_day, amount in self.recurring.values():
            if (last_day.year, last_day.month) != (month_end.year, month_end.month):
                continue
            current = max(last_day, day) + timedelta(days=1)
            while current <= month_end:
                ahead[current] = ahead.get(current, Decimal(0)) + amount
                current += timedelta(days=1)
        return ahead


def spend_split(
    *,
    workspace: Workspace,
    start: date,
    end: date,
    provider_id: int | None = None,
    account_id: int | None = None,
) -> SpendSplit:
    """Usage-based spend and fixed charges per UTC day in [start, end) (see FIXED_CHARGE).

    Usage is the roll-up minus the fixed records of the same day, so the two always add up to
    the totals every other page shows.
    """
    rollup = effective_daily(workspace=workspace, start=start, end=end)
    if provider_id is not None:
        rollup = rollup.filter(provider_id=provider_id)
    if account_id is not None:
        rollup = rollup.filter(account_id=account_id)
    totals = {
        r["day"]: r["cost"] or Decimal(0)
        for r in rollup.values("day").annotate(cost=MoneySum("cost")).order_by()
    }
    split = SpendSplit()
    fixed_rows = (
        fixed_charge_records(
            workspace=workspace,
            start=start,
            end=end,
            provider_id=provider_id,
            account_id=account_id,
        )
        .filter(cost__isnull=False)
        .order_by("bucket_start", "id")
        .values_list("bucket_start", "cost", "account_id", "line_item", "source")
    )
    for bucket_start, cost, row_account_id, line_item, source in fixed_rows:
        day = bucket_start.astimezone(UTC).date()
        split.fixed[day] = split.fixed.get(day, Decimal(0)) + cost
        if source == Source.OFFICIAL:  # PRORATED_FIXED_CHARGE; rows come oldest first
            key = (row_account_id, line_item)
            last = split.recurring.get(key)
            if last is None or last[0] != day:
                split.recurring[key] = (day, cost)
            else:
                split.recurring[key] = (day, last[1] + cost)
    for day, total in totals.items():
        usage = total - split.fixed.get(day, Decimal(0))
        if usage or day not in split.fixed:  # a day of fixed charges only has no usage
            split.usage[day] = usage
    return split


def forecast_from_split(*, split: SpendSplit, today: date):
    """alerts.forecast over a split: fixed charges as booked, a run-rate for usage only."""
    from alerts.forecast import forecast_month_end

    first, next_first = month_bounds(today)
    month_end = next_first - timedelta(days=1)
    return forecast_month_end(
        daily_spend={d: v for d, v in split.usage.items() if d >= first},
        history={d: v for d, v in split.usage.items() if d < first},
        fixed={d: v for d, v in split.fixed.items() if first <= d <= month_end},
        fixed_ahead=split.committed_after(day=today, month_end=month_end),
        today=today,
    )


def forecast_with_days(*, workspace: Workspace, today: date | None = None):
    """Month-end forecast of the workspace's total spend, and this month's spend per day so far.

    alerts.forecast over the roll-up: the month is the workspace's (time zone) month, each day's
    spend its UTC-day roll-up; 60 days before the month feed the trend and weekday pattern.
    Fixed charges are counted as booked; only usage-based spend is extrapolated (FIXED_CHARGE).
    """
    today = today or today_for(workspace)
    first, next_first = month_bounds(today)
    split = spend_split(
        workspace=workspace, start=first - timedelta(days=FORECAST_HISTORY_DAYS), end=next_first
    )
    forecast = forecast_from_split(split=split, today=today)
    days = set(split.usage) | set(split.fixed)
    this_month = {d: split.total(d) for d in sorted(days) if first <= d <= today}
    return forecast, this_month


def forecast_for_workspace(*, workspace: Workspace, today: date | None = None):
    return forecast_with_days(workspace=workspace, today=today)[0]


@dataclass
class ReconciliationRow:
    account: ProviderAccount
    month: str
    official: Decimal = Decimal(0)
    estimated: Decimal = Decimal(0)  # every estimate, also those official figures supersede
    estimated_counted: Decimal = Decimal(0)  # estimates on days without official figures
    manual: Decimal = Decimal(0)  # without true-ups
    true_up: Decimal | None = None
    invoice: Decimal | None = None
    invoice_note: str = ""
    unpriced_count: int = 0

    @property
    def counted(self) -> Decimal:
        """What the dashboard counts, before any true-up."""
        return self.official + self.estimated_counted + self.manual

    @property
    def reference(self) -> Decimal | None:
        """The figure to reconcile against: the invoice if typed in, else the official total."""
        if self.invoice is not None:
            return self.invoice
        return self.official if self.official else None

    @property
    def reference_kind(self) -> str:
        if self.invoice is not None:
            return "invoice"
        return "official" if self.official else ""

    @property
    def variance(self) -> Decimal | None:
        return None if self.reference is None else self.reference - self.counted

    @property
    def variance_pct(self) -> Decimal | None:
        if self.variance is None or not self.reference:
            return None
        return (self.variance / self.reference * 100).quantize(Decimal("0.1"))


def invoice_get(*, account: ProviderAccount, month_start: date) -> Invoice | None:
    return Invoice.objects.filter(account=account, month=month_start).first()


def invoice_list(*, account: ProviderAccount) -> QuerySet[Invoice]:
    return Invoice.objects.filter(account=account).order_by("-month")


def true_up_records(*, account_ids, month: str) -> QuerySet[UsageRecord]:
    return UsageRecord.objects.filter(
        account_id__in=account_ids, source=Source.MANUAL, tags__true_up=month
    )


def reconciliation_month(
    *, workspace: Workspace, month_start: date, account_id: int | None = None
) -> list[ReconciliationRow]:
    """Per account, the month's official, estimated and manual totals next to its invoice."""
    _, next_first = month_bounds(month_start)
    month = f"{month_start:%Y-%m}"
    accounts = ProviderAccount.objects.filter(workspace=workspace).select_related("provider")
    if account_id:
        accounts = accounts.filter(pk=account_id)
    result = {a.pk: ReconciliationRow(account=a, month=month) for a in accounts}
    for invoice in Invoice.objects.filter(account_id__in=result, month=month_start):
        row = result[invoice.account_id]
        # "123.45", not "123.450000000000": the page puts it back into an input box.
        row.invoice = Decimal(format(invoice.amount.normalize(), "f"))
        row.invoice_note = invoice.note
    raw = (
        DailyUsage.objects.filter(account_id__in=result, day__gte=month_start, day__lt=next_first)
        .values("account_id", "source")
        .annotate(cost=MoneySum("cost"), unpriced=Sum("unpriced_count"))
        .order_by()
    )
    for r in raw:
        row = result[r["account_id"]]
        cost = r["cost"] or Decimal(0)
        if r["source"] == Source.OFFICIAL:
            row.official += cost
        elif r["source"] == Source.ESTIMATED:
            row.estimated += cost
        else:
            row.manual += cost
        row.unpriced_count += r["unpriced"] or 0
    counted_estimates = (
        effective_daily(workspace=workspace, start=month_start, end=next_first)
        .filter(account_id__in=result, source=Source.ESTIMATED)
        .values("account_id")
        .annotate(cost=MoneySum("cost"))
        .order_by()
    )
    for r in counted_estimates:
        result[r["account_id"]].estimated_counted = r["cost"] or Decimal(0)
    true_ups = (
        true_up_records(account_ids=list(result), month=month)
        .values("account_id")
        .annotate(cost=MoneySum("cost"))
        .order_by()
    )
    for r in true_ups:
        row = result[r["account_id"]]
        row.true_up = r["cost"] or Decimal(0)
        row.manual -= row.true_up
    return list(result.values())


EXPORT_COLUMNS = (
    "id",
    "account_id",
    "account__name",
    "provider__slug",
    "model",
    "line_item",
    "description",
    "request_id",
    "bucket_start",
    "granularity",
    *TOKEN_FIELDS,
    *UNIT_FIELDS,
    "source",
    "status",
    "cost",
    "currency",
    "tags",
)


class RecordFilters(TypedDict, total=False):
    """The filters the exports take besides workspace and dates (usage_history's)."""

    provider: str | None
    account_id: int | None
    source: str | None
    model: str | None


def export_rows(*, workspace: Workspace, start: date, end: date, **filters: Unpack[RecordFilters]):
    """The workspace's usage records of UTC days start..end (inclusive) as value tuples, oldest
    first.

    A lazy iterator over a server-side cursor (2,000 rows a fetch): the caller streams it.
    """
    qs = usage_history(workspace=workspace, start=start, end=end, **filters)
    return qs.order_by("bucket_start", "id").values_list(*EXPORT_COLUMNS).iterator(chunk_size=2000)


# The usage-record columns the FOCUS export (usage/focus.py) reads, as named in its rows:
# the CSV export's and a few more.
FOCUS_READS = (*EXPORT_COLUMNS, "provider__name", "fixed_charge", "true_up")
# A true-up (usage/services/reconciliation.py): the manual entry that books invoice − counted.
TRUE_UP = Q(source=Source.MANUAL, tags__has_key="true_up")


def records_not_superseded(qs: QuerySet[UsageRecord]) -> QuerySet[UsageRecord]:
    """`qs` without the estimated records that official figures supersede, as every total
    leaves them out. The roll-up's stored `superseded` flag is the rule's one result; this
    reads it instead of deciding again."""
    superseded = DailyUsage.objects.filter(
        account_id=OuterRef("account_id"),
        day=OuterRef("utc_day"),
        source=Source.ESTIMATED,
        model=OuterRef("model"),
        superseded=True,
    )
    return qs.annotate(utc_day=TruncDate("bucket_start", tzinfo=UTC)).exclude(
        Q(source=Source.ESTIMATED) & Exists(superseded)
    )


def _focus_records(*, workspace: Workspace, start: date, end: date, **filters):
    """export_rows' records (the same filters) as billing data: superseded estimates left out."""
    return records_not_superseded(
        usage_history(workspace=workspace, start=start, end=end, **filters)
    )


def focus_rows(*, workspace: Workspace, start: date, end: date, **filters: Unpack[RecordFilters]):
    """The priced records of the FOCUS export as dicts (FOCUS_READS), oldest first.

    Unpriced records are left out: every FOCUS cost column is non-nullable, and an unpriced
    cost must never be written as 0 (focus_unpriced_count says how many were left out).
    Superseded estimates are left out (see _focus_records). Like export_rows, a lazy iterator
    over a server-side cursor.
    """
    qs = _focus_records(workspace=workspace, start=start, end=end, **filters)
    flag = {"default": Value(False), "output_field": BooleanField()}
    qs = qs.filter(cost__isnull=False).annotate(
        fixed_charge=Case(When(FIXED_CHARGE, then=Value(True)), **flag),
        true_up=Case(When(TRUE_UP, then=Value(True)), **flag),
    )
    return qs.order_by("bucket_start", "id").values(*FOCUS_READS).iterator(chunk_size=2000)


def focus_unpriced_count(
    *, workspace: Workspace, start: date, end: date, **filters: Unpack[RecordFilters]
) -> int:
    """How many records focus_rows leaves out for want of a price."""
    qs = _focus_records(workspace=workspace, start=start, end=end, **filters)
    return qs.filter(cost__isnull=True).count()
