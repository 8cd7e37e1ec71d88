"""Reconciliation writes: the invoice total a user types in, and the true-up that books it.

Invoice totals live in ``ProviderAccount.config["invoices"]`` keyed by month
(``{"invoices": {"2026-11": "123.45"}}``, money as a string), so this feature needs no table of
its own. A true-up is a manual usage record tagged ``{"true_up": "2026-11"}``; booking again
replaces the month's previous true-up instead of adding a second one.
"""

from __future__ import annotations

import calendar
from datetime import date
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import transaction

from providers.models import ProviderAccount
from usage import bounds
from usage.models import UsageRecord
from usage.selectors import invoice_for, reconciliation_month, true_up_records
from usage.services.records import manual_entry_create, usage_record_delete


def month_key(month_start: date) -> str:
    return f"{month_start:%Y-%m}"


@transaction.atomic
def invoice_total_set(
    *, account: ProviderAccount, month_start: date, total: Decimal | None
) -> ProviderAccount:
    """Store (or with None, clear) the invoice total of one account and month."""
    if total is not None and (problem := bounds.INVOICE.problem(total)):
        raise ValidationError({"invoice": f"Must be a number {problem.removeprefix('must be ')}."})
    # Lock the row: config also holds other settings a concurrent edit could overwrite.
    locked = ProviderAccount.objects.select_for_update().get(pk=account.pk)
    config = dict(locked.config or {})
    invoices = dict(config.get("invoices") or {})
    if total is None:
        invoices.pop(month_key(month_start), None)
    else:
        invoices[month_key(month_start)] = str(total)
    config["invoices"] = invoices
    locked.config = config
    locked.save(update_fields=["config", "updated_at"])
    account.config = config
    return locked


def true_up_day(month_start: date, today: date) -> date:
    """The month's last day, or today while the month is still running."""
    last = month_start.replace(day=calendar.monthrange(month_start.year, month_start.month)[1])
    return min(last, today)


@transaction.atomic
def true_up_book(*, account: ProviderAccount, month_start: date, today: date) -> UsageRecord | None:
    """Book invoice − counted total as a manual entry, replacing the month's earlier true-up.

    Returns the new record, or None when the counted total already equals the invoice.
    """
    month = month_key(month_start)
    if month_start > today:
        raise ValidationError({"month": "Cannot true up a month that has not started."})
    account = ProviderAccount.objects.select_for_update().get(pk=account.pk)
    invoice = invoice_for(account, month)
    if invoice is None:
        raise ValidationError({"invoice": f"Enter the invoice total for {month} first."})
    for previous in true_up_records(account_ids=[account.pk], month=month):
        usage_record_delete(record=previous)
    (row,) = reconciliation_month(
        user=account.owner, month_start=month_start, account_id=account.pk
    )
    difference = invoice - row.counted
    if not difference:
        return None
    if problem := bounds.COST.problem(difference):
        raise ValidationError({"invoice": f"The true-up of {difference:,.2f} USD {problem}."})
    return manual_entry_create(
        account=account,
        day=true_up_day(month_start, today),
        description=f"True-up to invoice {month}",
        cost=difference,
        tags={"true_up": month},
    )
