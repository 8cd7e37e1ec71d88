"""Enforced budgets: the proxy's check before a call, and the spend each call adds after it.

An enforced budget stops the proxied calls it covers once its period's spend reaches the
amount: 429 ``budget_exceeded``. Ingestion is never refused (it reports calls that already
happened and were billed), and neither is sync.

The check sits on the proxy's hot path, so it stays small:

* which enforced budgets a workspace has is read once and kept in this process for
  ``ENFORCED_CACHE_SECONDS`` (a budget saved on another process or node takes effect within
  that time; one saved here, at once);
* a call no enforced budget covers costs a dictionary lookup;
* a covered call costs one query, reading its budgets' period spend (``BudgetPeriodSpend``);
  its record adds its cost to them in the same statement (PostgreSQL) or transaction
  (SQLite) that writes it (usage.services.requests.request_events_record, budget_periods).

``BudgetPeriodSpend`` is set from the roll-ups by every alert evaluation (which every change
in spend asks for within 60 s, so ingested, synced and manual spend counts too) and raised at
once by every proxied call a budget covers, so concurrent calls see each other's spend.

**Overshoot bound.** A call goes through while its budgets' spend is under the amount, and
its cost is added when it is recorded, at its end. So the calls already in flight when the
spend reaches the amount still complete: the spend passes the amount by at most the cost of
the calls in flight at that moment (with N concurrent clients, the call that crossed plus at
most N - 1 others), plus spend that ingestion or sync report before the next evaluation.
"""

from __future__ import annotations

import threading
import time
import zoneinfo
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

from django.db import transaction

from accounts.models import Workspace
from alerts.models import Budget, BudgetPeriodSpend
from alerts.selectors import BudgetTarget, period_bounds, target_for_budget, target_spend
from costtracker.db import fetch_prepared
from providers.models import ProviderAccount
from usage.extraction import RequestUsage
from usage.services.prices import shared_price_book
from usage.services.requests import budget_periods_where, request_costing

ENFORCED_CACHE_SECONDS = 2.0
SPENT_QUANTUM = Decimal("1e-12")  # BudgetPeriodSpend.spent's decimal places


@dataclass(frozen=True)
class Enforced:
    """What the check needs of one enforced budget."""

    budget_id: int
    label: str
    amount: Decimal
    period: str
    scope: str
    provider_id: int | None
    account_id: int | None
    ingest_key_id: int | None
    tag: str
    tag_value: str
    refuse_unpriced: bool

    def covers(self, *, account: ProviderAccount, ingest_key_id: int | None, tags: dict) -> bool:
        if self.scope == Budget.Scope.OVERALL:
            return True
        if self.scope == Budget.Scope.PROVIDER:
            return account.provider_id == self.provider_id
        if self.scope == Budget.Scope.ACCOUNT:
            return account.pk == self.account_id
        if self.scope == Budget.Scope.INGEST_KEY:
            return ingest_key_id is not None and ingest_key_id == self.ingest_key_id
        return tags.get(self.tag) == self.tag_value


@dataclass(frozen=True)
class Refusal:
    status: int
    kind: str
    message: str


@dataclass
class Check:
    """The check's answer: a refusal, or the budget periods the call's cost is added to."""

    refusal: Refusal | None = None
    periods: list[tuple[int, date]] = field(default_factory=list)


@dataclass(frozen=True)
class _Entry:
    expires: float
    zone: zoneinfo.ZoneInfo
    budgets: tuple[Enforced, ...]


_lock = threading.Lock()
_entries: dict[int, _Entry] = {}


def _enforced(workspace_id: int) -> _Entry:
    now = time.monotonic()
    entry = _entries.get(workspace_id)
    if entry is not None and entry.expires > now:
        return entry
    rows = Budget.objects.filter(workspace_id=workspace_id, enforced=True).select_related(
        "provider", "account", "ingest_key__account"
    )
    budgets = tuple(
        Enforced(
            budget_id=b.pk,
            label=b.target_label,
            amount=b.amount,
            period=b.period,
            scope=b.scope,
            provider_id=b.provider_id,
            account_id=b.account_id,
            ingest_key_id=b.ingest_key_id,
            tag=b.tag,
            tag_value=b.tag_value,
            refuse_unpriced=b.refuse_unpriced,
        )
        for b in rows
    )
    zone = Workspace.objects.get(pk=workspace_id).zone
    entry = _Entry(now + ENFORCED_CACHE_SECONDS, zone, budgets)
    with _lock:
        _entries[workspace_id] = entry
    return entry


def enforced_budgets_forget(workspace_id: int | None = None) -> None:
    """Read the workspace's (or every) enforced budgets again on the next call."""
    with _lock:
        if workspace_id is None:
            _entries.clear()
        else:
            _entries.pop(workspace_id, None)


_TABLE = BudgetPeriodSpend._meta.db_table


def _period_spend(periods: list[tuple[int, date]]) -> dict[int, Decimal]:
    where, params = budget_periods_where(periods)
    rows = fetch_prepared(f"SELECT budget_id, spent FROM {_TABLE} WHERE {where}", params)
    # Quantized as the column is: SQLite keeps the sum as a double, where ten adds of 0.01
    # make 0.09999999999999999 and would let one more call past a $0.10 budget.
    return {budget_id: Decimal(str(spent)).quantize(SPENT_QUANTUM) for budget_id, spent in rows}


def _period_spend_seed(budget_id: int, start: date) -> Decimal | None:
    """A period's first check: its spend so far from the roll-ups, stored (locked first, as
    every evaluation does) for the next. None when the budget is gone (deleted on another
    process since this one read the list)."""
    budget = (
        Budget.objects.select_related("workspace", "provider", "account", "ingest_key__account")
        .filter(pk=budget_id)
        .first()
    )
    if budget is None:
        return None
    return enforced_spend_refresh(
        workspace=budget.workspace, target=target_for_budget(budget), period_start=start
    )


def _model_priced(account: ProviderAccount, model: str, at: datetime) -> bool:
    if not model:
        return False
    rule = shared_price_book().rule_for(provider=account.provider, model=model, at=at)
    probe = RequestUsage(model=model, input_tokens=1, output_tokens=1)
    return request_costing(account=account, usage=probe, rule=rule).total is not None


def _money(amount: Decimal) -> str:
    return f"${amount.quantize(Decimal('0.01')):,}"


def enforcement_check(
    *,
    account: ProviderAccount,
    ingest_key_id: int | None,
    tags: dict[str, str],
    model: str | callable,
    now: datetime,
) -> Check:
    """May this proxied call go out? `model` (or a callable giving it, read only when a
    budget refuses unpriced models) is the model the client asked for."""
    entry = _enforced(account.workspace_id)
    covering = [
        b
        for b in entry.budgets
        if b.covers(account=account, ingest_key_id=ingest_key_id, tags=tags)
    ]
    if not covering:
        return Check()
    today = now.astimezone(entry.zone).date()
    # In budget order, so the record's statement locks their rows in one order.
    covering.sort(key=lambda b: b.budget_id)
    periods = [(b.budget_id, period_bounds(today, b.period)[0]) for b in covering]
    spent = _period_spend(periods)
    counted = []  # the periods the call's cost is added to: those of budgets still there
    for budget, (budget_id, start) in zip(covering, periods, strict=True):
        so_far = spent.get(budget_id)
        if so_far is None:
            so_far = _period_spend_seed(budget_id, start)
            if so_far is None:  # deleted since this process read the list
                continue
        counted.append((budget_id, start))
        if so_far >= budget.amount:
            word = Budget.Period(budget.period).label.lower()
            return Check(
                Refusal(
                    429,
                    "budget_exceeded",
                    f"Budget exceeded: {budget.label} has spent {_money(so_far)} of its "
                    f"{_money(budget.amount)} per {word} (period from {start}). "
                    "Calls it covers are refused until the period ends or the budget is raised.",
                )
            )
    if any(b.refuse_unpriced for b in covering):
        name = model() if callable(model) else model
        if not _model_priced(account, name, now):
            return Check(
                Refusal(
                    403,
                    "model_not_priced",
                    f"The model {name or '(none given)'!r} has no price, and an enforced budget "
                    "covering this call refuses models whose spend it cannot count.",
                )
            )
    return Check(periods=counted)


def enforced_spend_refresh(
    *, workspace: Workspace, target: BudgetTarget, period_start: date
) -> Decimal:
    """Set the period's spend to what the roll-ups say (every alert evaluation); older
    periods' rows go. The row is locked before the roll-ups are read: a proxied call recorded
    meanwhile waits, then adds its cost on top, so it is neither lost nor counted twice."""
    budget = target.budget
    _, end = period_bounds(period_start, budget.period)
    with transaction.atomic():
        BudgetPeriodSpend.objects.bulk_create(
            [BudgetPeriodSpend(budget=budget, period_start=period_start)], ignore_conflicts=True
        )
        row = BudgetPeriodSpend.objects.select_for_update().get(
            budget=budget, period_start=period_start
        )
        row.spent = target_spend(workspace=workspace, target=target, start=period_start, end=end)
        row.save(update_fields=["spent", "updated_at"])
        BudgetPeriodSpend.objects.filter(budget=budget, period_start__lt=period_start).delete()
    return row.spent
