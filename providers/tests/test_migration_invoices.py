"""The data migration that moves invoice totals and the demo flag out of ProviderAccount.config."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from costtracker.tests.migrating import back_to_latest, migrate_to  # noqa: F401

BEFORE = ("providers", "0004_provcfg_invoices")
AFTER = ("providers", "0005_provcfg_invoices_from_config")


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.usefixtures("back_to_latest")
def test_it_moves_invoices_and_the_demo_flag_into_their_own_columns():
    apps = migrate_to([BEFORE])
    User = apps.get_model("accounts", "User")
    Provider = apps.get_model("providers", "Provider")
    Account = apps.get_model("providers", "ProviderAccount")
    owner = User.objects.create(username="old")
    copilot = Provider.objects.get(slug="copilot")
    openai = Provider.objects.get(slug="openai")
    # Shapes the old code stored: settings, invoices keyed "YYYY-MM" (money as strings), demo.
    gh = Account.objects.create(
        owner=owner,
        provider=copilot,
        name="GH",
        config={
            "organization": "acme",
            "invoices": {"2026-10": "190", "2026-11": "123.45", "2026-12": ""},
            "demo": True,
        },
    )
    odd = Account.objects.create(
        owner=owner,
        provider=openai,
        name="Odd",
        config={"invoices": {"2026-09": "-5.5", "bad-month": "1", "2026-08": "1e20"}},
    )
    plain = Account.objects.create(owner=owner, provider=openai, name="Plain", config={})

    apps = migrate_to([AFTER])
    Account = apps.get_model("providers", "ProviderAccount")
    Invoice = apps.get_model("providers", "Invoice")
    rows = sorted(
        (i.account.name, i.month, i.amount, i.currency, i.note) for i in Invoice.objects.all()
    )
    assert rows == [
        ("GH", date(2026, 10, 1), Decimal("190"), "USD", ""),
        ("GH", date(2026, 11, 1), Decimal("123.45"), "USD", ""),  # "" (cleared) is no invoice
        ("Odd", date(2026, 9, 1), Decimal("-5.5"), "USD", ""),  # a credit stays a credit
    ]
    gh = Account.objects.get(pk=gh.pk)
    assert (gh.config, gh.is_demo) == ({"organization": "acme"}, True)
    odd = Account.objects.get(pk=odd.pk)
    # What cannot be read as a month and an amount in bounds is kept, not destroyed.
    assert (odd.config, odd.is_demo) == ({"invoices": {"bad-month": "1", "2026-08": "1e20"}}, False)
    plain = Account.objects.get(pk=plain.pk)
    assert (plain.config, plain.is_demo) == ({}, False)

    # Reversible: back to the old shape...
    apps = migrate_to([BEFORE])
    gh = apps.get_model("providers", "ProviderAccount").objects.get(pk=gh.pk)
    assert gh.config == {
        "organization": "acme",
        "invoices": {"2026-10": "190", "2026-11": "123.45"},
        "demo": True,
    }
    # ...and running the step again adds nothing.
    apps = migrate_to([AFTER])
    assert apps.get_model("providers", "Invoice").objects.count() == 3
