"""Reads for budgets, alerts and notification channels. Everything starts from a workspace.

A provider account's own ``monthly_budget`` (set on the account form) is read here as an
account-scope budget with the default thresholds and a forecast alert. It is evaluated
directly rather than copied into a ``Budget`` row, so there is one place to edit it and nothing
to keep in step; ``BudgetTarget`` is the common shape of both.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from django.db.models import Count, Q, QuerySet, Sum
from django.shortcuts import get_object_or_404

from accounts.models import Workspace
from alerts.models import (
    Alert,
    Budget,
    NotificationChannel,
    NotificationDelivery,
    default_thresholds,
)
from providers.models import ProviderAccount
from usage.db import MoneySum
from usage.models import DailyAttribution, Dimension, Source, UsageRecord
from usage.selectors import (
    FORECAST_HISTORY_DAYS,
    budget_status,
    effective_daily,
    effective_rollup,
    fixed_charge_records,
    forecast_from_split,
    month_bounds,
    records_not_superseded,
    spend_split,
    today_for,
)

ZERO = Decimal(0)


def period_bounds(day: date, period: str) -> tuple[date, date]:
    """The budget period holding `day`: [first day, first day of the next period). Weeks run
    Monday to Sunday (ISO 8601); days and weeks, like months, are the workspace's calendar."""
    if period == Budget.Period.DAILY:
        return day, day + timedelta(days=1)
    if period == Budget.Period.WEEKLY:
        monday = day - timedelta(days=day.weekday())
        return monday, monday + timedelta(days=7)
    return month_bounds(day)


# How a period's name reads in messages, and in dedupe keys (monthly keys kept their format).
PERIOD_WORDS = {
    Budget.Period.DAILY: ("today", "%Y-%m-%d"),
    Budget.Period.WEEKLY: ("this week", "week-%Y-%m-%d"),
    Budget.Period.MONTHLY: ("this month", "%Y-%m"),
}

FORECAST_SCOPES = (Budget.Scope.OVERALL, Budget.Scope.PROVIDER, Budget.Scope.ACCOUNT)

# The attribution dimension a tag scope reads (the tag's own name).
TAG_DIMENSIONS = {tag.value: Dimension(tag.value) for tag in Budget.Tag}


@dataclass(frozen=True)
class BudgetTarget:
    """A Budget row or an account's monthly_budget: what to compare a period's spend with."""

    key: str  # stable part of every dedupe key: "budget:<id>" or "account-budget:<id>"
    label: str
    scope: str
    amount: Decimal
    thresholds: tuple[int, ...]
    forecast_alert: bool
    budget: Budget | None = None
    provider_id: int | None = None
    account: ProviderAccount | None = None
    period: str = Budget.Period.MONTHLY
    ingest_key_id: int | None = None
    tag: str = ""
    tag_value: str = ""

    @property
    def account_id(self) -> int | None:
        return self.account.pk if self.account else None

    @property
    def enforced(self) -> bool:
        return bool(self.budget and self.budget.enforced)

    @property
    def period_label(self) -> str:
        return Budget.Period(self.period).label

    @property
    def period_word(self) -> str:
        return PERIOD_WORDS[self.period][0]

    def period_key(self, start: date) -> str:
        return start.strftime(PERIOD_WORDS[self.period][1])

    def attribution(self) -> tuple[str, str] | None:
        """(dimension, value) of the attribution roll-up rows this target reads, if any."""
        if self.scope == Budget.Scope.INGEST_KEY:
            return Dimension.INGEST_KEY, str(self.ingest_key_id)
        if self.scope == Budget.Scope.TAG:
            return TAG_DIMENSIONS[self.tag], self.tag_value
        return None


@dataclass(frozen=True)
class BudgetStatus:
    target: BudgetTarget
    period: date
    spent: Decimal
    percent: Decimal | None
    status: str  # ok < 80 % <= warning < 100 % <= critical
    # Requests with no price: their spend is unknown, so a low % may not mean "OK".
    unpriced_count: int = 0

    @property
    def status_known(self) -> bool:
        """False when all the spend is unpriced: 0 % of the budget would be a false "OK"."""
        return not (self.unpriced_count and not self.spent)

    @property
    def period_end(self) -> date:
        """The first day after the period (exclusive end)."""
        return period_bounds(self.period, self.target.period)[1]

    @property
    def period_last_day(self) -> date:
        return self.period_end - timedelta(days=1)

    @property
    def refusing_calls(self) -> bool:
        """An enforced budget whose period's spend has reached its amount: the proxy refuses
        the calls it covers (the same comparison as alerts/enforcement.py)."""
        return self.target.enforced and self.spent >= self.target.amount


def budget_list(*, workspace: Workspace) -> QuerySet[Budget]:
    return Budget.objects.filter(workspace=workspace).select_related(
        "provider", "account__provider", "ingest_key__account"
    )


def budget_get_for_workspace(*, workspace: Workspace, pk) -> Budget:
    """404 for anyone else's budget."""
    return get_object_or_404(budget_list(workspace=workspace), pk=pk)


def target_for_budget(budget: Budget) -> BudgetTarget:
    return BudgetTarget(
        key=f"budget:{budget.pk}",
        label=budget.target_label,
        scope=budget.scope,
        amount=budget.amount,
        thresholds=tuple(sorted(set(budget.thresholds))),
        # A month-end forecast says nothing about a day's or a week's budget; spend by tag or
        # key has no forecast (the forecast splits fixed charges from usage per account).
        forecast_alert=budget.forecast_alert
        and budget.period == Budget.Period.MONTHLY
        and budget.scope in FORECAST_SCOPES,
        budget=budget,
        provider_id=budget.provider_id,
        account=budget.account,
        period=budget.period,
        ingest_key_id=budget.ingest_key_id,
        tag=budget.tag,
        tag_value=budget.tag_value,
    )


def budget_targets(*, workspace: Workspace) -> list[BudgetTarget]:
    """The workspace's budgets, then every account with a positive monthly_budget."""
    targets = [target_for_budget(b) for b in budget_list(workspace=workspace)]
    accounts = ProviderAccount.objects.filter(
        workspace=workspace, monthly_budget__gt=0
    ).select_related("provider")
    for account in accounts:
        targets.append(
            BudgetTarget(
                key=f"account-budget:{account.pk}",
                label=f"Account {account.name} (set on the account)",
                scope=Budget.Scope.ACCOUNT,
                amount=account.monthly_budget,
                thresholds=tuple(default_thresholds()),
                forecast_alert=True,
                account=account,
            )
        )
    return targets


def _target_rows(*, workspace: Workspace, target: BudgetTarget, start: date, end: date):
    if attribution := target.attribution():
        dimension, value = attribution
        return effective_rollup(
            workspace=workspace, rollup=DailyAttribution, start=start, end=end
        ).filter(dimension=dimension, value=value)
    qs = effective_daily(workspace=workspace, start=start, end=end)
    if target.scope == Budget.Scope.PROVIDER:
        qs = qs.filter(provider_id=target.provider_id)
    elif target.scope == Budget.Scope.ACCOUNT:
        qs = qs.filter(account_id=target.account_id)
    return qs


def target_spend(*, workspace: Workspace, target: BudgetTarget, start: date, end: date) -> Decimal:
    """Spend in [start, end) that counts against the target (official supersedes estimated)."""
    return target_totals(workspace=workspace, target=target, start=start, end=end)[0]


def target_totals(
    *, workspace: Workspace, target: BudgetTarget, start: date, end: date
) -> tuple[Decimal, int]:
    """(priced spend, unpriced requests) in the workspace's days [start, end) that count
    against the target."""
    rows = _target_rows(workspace=workspace, target=target, start=start, end=end)
    totals = rows.aggregate(t=MoneySum("cost"), u=Sum("unpriced_count"))
    edge_cost, edge_unpriced = _zone_edges(workspace=workspace, target=target, start=start, end=end)
    return (totals["t"] or ZERO) + edge_cost, (totals["u"] or 0) + edge_unpriced


def _zone_edges(
    *, workspace: Workspace, target: BudgetTarget, start: date, end: date
) -> tuple[Decimal, int]:
    """What makes a period's per-request spend exact in the workspace's zone.

    The roll-ups are per UTC day, and a period of days [start, end) in, say, Tokyo begins 9
    hours before the UTC day of its first date. Per-request records carry their instant, so
    those inside the period's instants but on a UTC day outside its dates are added, and those
    on its UTC days but outside its instants taken away; without this an enforced daily budget
    would, after each evaluation, forget the calls made in those hours. Official and manual
    figures are per UTC day and count by their date, as before; so do estimates they
    supersede. (cost, unpriced requests), both possibly negative; nothing at all in UTC.
    """
    zone = workspace.zone
    local = [datetime.combine(day, time.min, zone).astimezone(UTC) for day in (start, end)]
    utc = [datetime.combine(day, time.min, UTC) for day in (start, end)]
    if local == utc:
        return ZERO, 0
    in_local = Q(bucket_start__gte=local[0], bucket_start__lt=local[1])
    in_utc = Q(bucket_start__gte=utc[0], bucket_start__lt=utc[1])
    records = UsageRecord.objects.filter(
        account__workspace=workspace,
        source=Source.ESTIMATED,
        bucket_start__gte=min(local[0], utc[0]),
        bucket_start__lt=max(local[1], utc[1]),
    )
    if target.scope == Budget.Scope.PROVIDER:
        records = records.filter(provider_id=target.provider_id)
    elif target.scope == Budget.Scope.ACCOUNT:
        records = records.filter(account_id=target.account_id)
    elif target.scope == Budget.Scope.INGEST_KEY:
        records = records.filter(ingest_key_id=target.ingest_key_id)
    elif target.scope == Budget.Scope.TAG:
        records = records.filter(**{f"tags__{target.tag}": target.tag_value})
    records = records_not_superseded(records)
    cost, unpriced = ZERO, 0
    for part, sign in ((in_local & ~in_utc, 1), (in_utc & ~in_local, -1)):
        totals = records.filter(part).aggregate(
            t=MoneySum("cost"), u=Count("pk", filter=Q(cost__isnull=True))
        )
        cost += sign * (totals["t"] or ZERO)
        unpriced += sign * totals["u"]
    return cost, unpriced


def _budget_status(*, workspace: Workspace, target: BudgetTarget, today: date) -> BudgetStatus:
    first, next_first = period_bounds(today, target.period)
    spent, unpriced = target_totals(workspace=workspace, target=target, start=first, end=next_first)
    percent, status = budget_status(spent, target.amount)
    return BudgetStatus(target, first, spent, percent, status, unpriced)


def target_daily_spend(
    *, workspace: Workspace, target: BudgetTarget, start: date, end: date
) -> dict[date, Decimal]:
    rows = (
        _target_rows(workspace=workspace, target=target, start=start, end=end)
        .values("day")
        .annotate(c=MoneySum("cost"))
        .order_by()
    )
    return {r["day"]: r["c"] or ZERO for r in rows}


def target_forecast(*, workspace: Workspace, target: BudgetTarget, today: date):
    """Month-end forecast of the spend that counts against the target.

    The same split as the dashboard (usage.selectors.spend_split): fixed charges as booked,
    a run-rate for usage-based spend only.
    """
    first, next_first = month_bounds(today)
    split = spend_split(
        workspace=workspace,
        start=first - timedelta(days=FORECAST_HISTORY_DAYS),
        end=next_first,
        provider_id=target.provider_id if target.scope == Budget.Scope.PROVIDER else None,
        account_id=target.account_id if target.scope == Budget.Scope.ACCOUNT else None,
    )
    return forecast_from_split(split=split, today=today)


def budget_statuses(*, workspace: Workspace, today: date | None = None) -> list[BudgetStatus]:
    """Every budget target with its period-to-date spend, % used and status."""
    today = today or today_for(workspace)
    return [
        _budget_status(workspace=workspace, target=target, today=today)
        for target in budget_targets(workspace=workspace)
    ]


def budget_status_for(
    *, workspace: Workspace, budget: Budget, today: date | None = None
) -> BudgetStatus:
    today = today or today_for(workspace)
    return _budget_status(workspace=workspace, target=target_for_budget(budget), today=today)


@dataclass
class ModelDay:
    cost: Decimal = ZERO
    tokens: int = 0
    input_tokens: int = 0
    cache_read_tokens: int = 0


_MODEL_DAY_SUMS = {
    "cost_sum": MoneySum("cost"),
    "records": Sum("record_count"),
    "input_sum": Sum("input_tokens"),
    "cache_read_sum": Sum("cache_read_tokens"),
    "cache_write_sum": Sum("cache_write_tokens"),
    "cache_write_1h_sum": Sum("cache_write_1h_tokens"),
    "output_sum": Sum("output_tokens"),
}


def account_model_days(
    *, workspace: Workspace, start: date, end: date
) -> dict[int, dict[str, dict[date, ModelDay]]]:
    """{account_id: {model: {day: ModelDay}}} of usage-based spend in [start, end).

    Fixed charges (usage.selectors.FIXED_CHARGE: manual entries, synced seat lines) are taken
    out: a seat charge or an invoice lands on one day by nature and would read as a spike, and
    a change in seat count is not a change in usage.
    """
    rows = (
        effective_daily(workspace=workspace, start=start, end=end)
        .values("account_id", "model", "day")
        .annotate(**_MODEL_DAY_SUMS)
        .order_by()
    )
    fixed_sums = {
        "cost_sum": MoneySum("cost"),
        "records": Count("id"),
        **{k: v for k, v in _MODEL_DAY_SUMS.items() if k not in ("cost_sum", "records")},
    }
    # Fixed records are day-bucketed (UTC midnight), so bucket_start stands for the day.
    fixed = {
        (r["account_id"], r["model"], r["bucket_start"].astimezone(UTC).date()): r
        for r in fixed_charge_records(workspace=workspace, start=start, end=end)
        .values("account_id", "model", "bucket_start")
        .annotate(**fixed_sums)
        .order_by()
    }
    result: dict[int, dict[str, dict[date, ModelDay]]] = defaultdict(lambda: defaultdict(dict))
    for r in rows:
        sums = {k: r[k] or 0 for k in _MODEL_DAY_SUMS}
        f = fixed.get((r["account_id"], r["model"], r["day"]))
        if f is not None:
            for k in _MODEL_DAY_SUMS:
                sums[k] -= f[k] or 0
            if sums["records"] <= 0:
                continue  # nothing but fixed charges: no usage that day
        input_tokens = sums["input_sum"]
        cache_read = sums["cache_read_sum"]
        tokens = (
            input_tokens
            + cache_read
            + sums["cache_write_sum"]
            + sums["cache_write_1h_sum"]
            + sums["output_sum"]
        )
        result[r["account_id"]][r["model"]][r["day"]] = ModelDay(
            cost=Decimal(sums["cost_sum"]),
            tokens=tokens,
            input_tokens=input_tokens,
            cache_read_tokens=cache_read,
        )
    return result


def alert_list(
    *, workspace: Workspace, kind: str | None = None, acknowledged: bool | None = None
) -> QuerySet[Alert]:
    """The workspace's alerts, newest first; not unlisted rows (thresholds passed silently,
    tests)."""
    qs = Alert.objects.filter(workspace=workspace, listed=True).select_related("budget", "account")
    if kind:
        qs = qs.filter(kind=kind)
    if acknowledged is True:
        qs = qs.filter(acknowledged_at__isnull=False)
    elif acknowledged is False:
        qs = qs.filter(acknowledged_at__isnull=True)
    return qs


def alert_get_for_workspace(*, workspace: Workspace, pk) -> Alert:
    """404 for anyone else's alert. Unlisted ones too: a test notification links to its page."""
    return get_object_or_404(
        Alert.objects.filter(workspace=workspace).select_related("account"), pk=pk
    )


def unacknowledged_count(*, workspace: Workspace) -> int:
    return alert_list(workspace=workspace, acknowledged=False).count()


def channel_list(*, workspace: Workspace) -> QuerySet[NotificationChannel]:
    return NotificationChannel.objects.filter(workspace=workspace)


def channel_get_for_workspace(*, workspace: Workspace, pk) -> NotificationChannel:
    """404 for anyone else's channel."""
    return get_object_or_404(channel_list(workspace=workspace), pk=pk)


def recent_deliveries(*, workspace: Workspace, limit: int = 20) -> QuerySet[NotificationDelivery]:
    return NotificationDelivery.objects.filter(channel__workspace=workspace).select_related(
        "alert", "channel"
    )[:limit]
