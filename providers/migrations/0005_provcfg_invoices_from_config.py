"""Move invoice totals and the demo flag out of ProviderAccount.config.

Before: ``config = {"organization": "acme", "invoices": {"2026-11": "123.45"}, "demo": true}``.
After: one Invoice row per month, ``is_demo`` set, and ``config`` holding provider settings only.
An invoice entry that cannot be read as a month and an amount within bounds (only a hand edit
of the database could have stored one) stays in ``config["invoices"]``, which nothing reads any
more, and is printed, so an operator can re-enter it on the Reconcile page.
"""

import re
from datetime import date
from decimal import Decimal, InvalidOperation

from django.db import migrations

MONTH = re.compile(r"^(\d{4})-(\d{2})$")
# usage.bounds.INVOICE at the time of writing (a migration keeps its own copy).
MAX_INVOICE = Decimal("1e12")


def _parse(month, value):
    match = MONTH.match(str(month))
    if not match or not 1 <= int(match[2]) <= 12 or isinstance(value, bool):
        return None
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    if not amount.is_finite() or abs(amount) > MAX_INVOICE:
        return None
    return date(int(match[1]), int(match[2]), 1), amount.quantize(Decimal("1e-12"))


def forwards(apps, schema_editor):
    ProviderAccount = apps.get_model("providers", "ProviderAccount")
    Invoice = apps.get_model("providers", "Invoice")
    for account in ProviderAccount.objects.all().iterator():
        config = dict(account.config) if isinstance(account.config, dict) else {}
        if "invoices" not in config and "demo" not in config:
            continue
        invoices = config.pop("invoices", None)
        kept = {}
        for month, value in (invoices.items() if isinstance(invoices, dict) else []):
            if value in (None, ""):
                continue
            parsed = _parse(month, value)
            if parsed is None:
                kept[month] = value
                continue
            Invoice.objects.update_or_create(
                account=account, month=parsed[0], defaults={"amount": parsed[1]}
            )
        if kept:
            config["invoices"] = kept
            print(f"\n  account {account.pk}: unreadable invoice totals left in config: {kept}")
        account.is_demo = config.pop("demo", None) is True
        account.config = config
        account.save(update_fields=["config", "is_demo"])


def backwards(apps, schema_editor):
    ProviderAccount = apps.get_model("providers", "ProviderAccount")
    Invoice = apps.get_model("providers", "Invoice")
    for account in ProviderAccount.objects.all().iterator():
        rows = Invoice.objects.filter(account=account)
        if not rows.exists() and not account.is_demo:
            continue
        config = dict(account.config or {})
        invoices = dict(config.get("invoices") or {})
        for row in rows:
            text = format(row.amount.normalize(), "f")
            invoices[f"{row.month:%Y-%m}"] = text
        if invoices:
            config["invoices"] = invoices
        if account.is_demo:
            config["demo"] = True
        account.config = config
        account.save(update_fields=["config"])


class Migration(migrations.Migration):
    dependencies = [("providers", "0004_provcfg_invoices")]

    operations = [migrations.RunPython(forwards, backwards)]
