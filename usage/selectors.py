"""Reads: totals, dashboards, history. Everything starts from a user and reads only their rows.

Totals come from the daily roll-up. Official supersedes estimated: for an account and UTC day
with official figures, that day's estimated rows are left out of totals (they stay visible in
history for reconciliation) rather than added on top.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.db.models import Exists, OuterRef, Q, QuerySet, Sum
from django.utils import timezone

from accounts.models import User
from providers.models import ProviderAccount
from usage.db import MoneySum
from usage.models import TOKEN_FIELDS, DailyUsage, Source, UsageRecord

WARNING_PCT = Decimal(80)
CRITICAL_PCT = Decimal(100)
_TOKEN_SUMS = {f: Sum(f) for f in TOKEN_FIELDS if f != "reasoning_tokens"}


def today_for(user: User, *, now: datetime | None = None) -> date:
    """The user's calendar date (their time zone draws day and month boundaries)."""
    return (now or timezone.now()).astimezone(user.zone).date()


def month_bounds(day: date) -> tuple[date, date]:
    """First day of day's month and first day of the next month (exclusive)."""
    first = day.replace(day=1)
    last = calendar.monthrange(day.year, day.month)[1]
    return first, first + timedelta(days=last)


def effective_daily(
    *, user: User, start: date | None = None, end: date | None = None
) -> QuerySet[DailyUsage]:
    """The user's roll-up rows in [start, end), with superseded estimates left out."""
    official_same_day = DailyUsage.objects.filter(
        account_id=OuterRef("account_id"), day=OuterRef("day"), source=Source.OFFICIAL
    )
    qs = DailyUsage.objects.filter(account__owner=user).exclude(
        Q(source=Source.ESTIMATED) & Q(Exists(official_same_day))
    )
    if start:
        qs = qs.filter(day__gte=start)
    if end:
        qs = qs.filter(day__lt=end)
    return qs


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


def month_summary(*, user: User, today: date | None = None) -> list[AccountMonth]:
    """Month to date per account: cost, tokens, % of budget, status."""
    today = today or today_for(user)
    first, next_first = month_bounds(today)
    accounts = {
        a.pk: AccountMonth(account=a)
        for a in ProviderAccount.objects.filter(owner=user).select_related("provider")
    }
    rows = (
        effective_daily(user=user, start=first, end=next_first)
        .values("account_id", "source")
        .annotate(
            cost_sum=MoneySum("cost"),
            unpriced=Sum("unpriced_count"),
            requests=Sum("request_count"),
            **_TOKEN_SUMS,
        )
        .order_by()
    )
    for r in rows:
        item = accounts[r["account_id"]]
        item.cost += r["cost_sum"] or 0
        item.tokens += sum(r[f] or 0 for f in _TOKEN_SUMS)
        item.requests += r["requests"] or 0
        item.unpriced_count += r["unpriced"] or 0
        item.sources.add(r["source"])
    for item in accounts.values():
        item.budget_pct, item.status = budget_status(item.cost, item.account.monthly_budget)
    return list(accounts.values())


def spend_total(*, user: User, start: date, end: date) -> Decimal:
    total = effective_daily(user=user, start=start, end=end).aggregate(t=MoneySum("cost"))["t"]
    return total or Decimal(0)


def spend_by_provider(*, user: User, start: date, end: date) -> list[dict]:
    rows = (
        effective_daily(user=user, start=start, end=end)
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


def spend_by_day(*, user: User, start: date, end: date) -> list[dict]:
    """One entry per day in [start, end), zero-filled, split by source."""
    days = {start + timedelta(days=i): {} for i in range((end - start).days)}
    rows = (
        effective_daily(user=user, start=start, end=end)
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
    user: User,
    provider: str | None = None,
    account_id: int | None = None,
    model: str | None = None,
    source: str | None = None,
    start: date | None = None,
    end: date | None = None,
) -> QuerySet[UsageRecord]:
    """Per-record history, newest first. Dates are UTC days, end inclusive."""
    from usage.services.rollup import day_start

    qs = UsageRecord.objects.filter(account__owner=user).select_related("account", "provider")
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
    return qs.order_by("-bucket_start", "-id")


def record_get_for_user(*, user: User, pk) -> UsageRecord:
    from django.shortcuts import get_object_or_404

    return get_object_or_404(UsageRecord.objects.filter(account__owner=user), pk=pk)
