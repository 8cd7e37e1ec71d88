"""Reconciliation writes: the invoice total a member types in, and the true-up that books it.

Invoice totals are :class:`providers.models.Invoice` rows, one per account and month. A true-up is
a manual usage record tagged ``{"true_up": "2026-11"}``; booking again replaces the month's
previous true-up instead of adding a second one.
"""

from __future__ import annotations

import calendar
from datetime import date
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import transaction

from audit.models import AuditEvent
from audit.services import audit_changes, audit_record, audit_snapshot, audit_state
from providers.models import Invoice, ProviderAccount
from usage import bounds
from usage.models import UsageRecord
from usage.selectors import invoice_get, reconciliation_month, true_up_records
from usage.services.records import manual_entry_write, usage_record_delete


def month_key(month_start: date) -> str:
    return f"{month_start:%Y-%m}"


@transaction.atomic
def invoice_set(
    *,
    account: ProviderAccount,
    month_start: date,
    amount: Decimal,
    currency: str = "USD",
    note: str = "",
) -> Invoice:
    """Store the invoice total of one account and month (replacing the month's earlier one)."""
    Invoice.amount_check(amount)
    if month_start.day != 1:
        raise ValidationError({"month": "Use the first day of the month."})
    if currency not in dict(Invoice._meta.get_field("currency").choices):
        raise ValidationError({"currency": "Only USD invoices can be reconciled."})
    if len(note) > Invoice._meta.get_field("note").max_length:
        raise ValidationError({"note": "At most 500 characters."})
    previous = Invoice.objects.filter(account=account, month=month_start).first()
    before = audit_state(previous) if previous is not None else None
    # update_or_create: two saves of the same month at once leave one row, not an error.
    invoice, created = Invoice.objects.update_or_create(
        account=account,
        month=month_start,
        defaults={"amount": amount, "currency": currency, "note": note},
    )
    audit_record(
        action=AuditEvent.Action.CREATED if created else AuditEvent.Action.UPDATED,
        obj=invoice,
        changes=audit_changes(before, invoice),
    )
    return invoice


@transaction.atomic
def invoice_delete(*, account: ProviderAccount, month_start: date) -> bool:
    """Forget the invoice total of one account and month; True if there was one."""
    invoice = Invoice.objects.filter(account=account, month=month_start).first()
    if invoice is None:
        return False
    audit_record(action=AuditEvent.Action.DELETED, obj=invoice, before=audit_snapshot(invoice))
    invoice.delete()
    return True


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
    stored = invoice_get(account=account, month_start=month_start)
    invoice = None if stored is None else stored.amount
    if invoice is None:
        raise ValidationError({"invoice": f"Enter the invoice total for {month} first."})
    replaced = []
    for previous in true_up_records(account_ids=[account.pk], month=month):
        replaced.append(str(previous.cost))
        usage_record_delete(record=previous)
    (row,) = reconciliation_month(
        workspace=account.workspace, month_start=month_start, account_id=account.pk
    )
    difference = invoice - row.counted
    record = None
    if difference:
        if problem := bounds.COST.problem(difference):
            raise ValidationError({"invoice": f"The true-up of {difference:,.2f} USD {problem}."})
        record = manual_entry_write(
            account=account,
            day=true_up_day(month_start, today),
            description=f"True-up to invoice {month}",
            cost=difference,
            tags={"true_up": month},
        )
    # One event for the booking, whether it added, replaced or (already even) removed an entry.
    audit_record(
        action=AuditEvent.Action.BOOKED,
        workspace=account.workspace,
        object_type="true-up",
        object_id=record.pk if record is not None else "",
        object_label=f"{account.name} {month}",
        changes={
            "invoice": [None, str(invoice)],
            "counted": [None, str(row.counted)],
            "true_up": [replaced[0] if replaced else None, str(difference) if difference else None],
        },
    )
    return record
