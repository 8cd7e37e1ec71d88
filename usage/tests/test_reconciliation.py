from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
import time_machine
from django.core.exceptions import ValidationError

from accounts.tests.factories import UserFactory
from providers.adapters.base import UsageLine
from providers.models import Invoice
from providers.registry import ADAPTERS
from providers.tests.factories import AccountFactory, provider
from usage import selectors
from usage.extraction import RequestUsage
from usage.models import DailyUsage, Price, UsageRecord
from usage.services.reconciliation import invoice_delete, invoice_set, true_up_book
from usage.services.records import manual_entry_create, usage_lines_replace_window
from usage.services.requests import RequestEvent, request_events_record

pytestmark = pytest.mark.django_db
NOV = date(2026, 11, 1)
TODAY = date(2026, 11, 20)


@pytest.fixture(autouse=True)
def _frozen():
    with time_machine.travel(datetime(2026, 11, 20, 12, tzinfo=UTC), tick=False):
        yield


def _setup():
    user = UserFactory()
    account = AccountFactory(workspace=user.personal_workspace, name="Prod")
    usage_lines_replace_window(
        account=account,
        start=date(2026, 11, 2),
        end=date(2026, 11, 4),
        lines=[
            UsageLine(day=date(2026, 11, 2), model="m", line_item="m", cost=Decimal("60")),
            UsageLine(day=date(2026, 11, 3), model="m", line_item="m", cost=Decimal("30")),
        ],
    )
    events = [
        # Nov 2 has official figures: this estimate is superseded, not added.
        RequestEvent("e1", RequestUsage(model="m"), datetime(2026, 11, 2, 9, tzinfo=UTC)),
        # Nov 10 has none: counted.
        RequestEvent("e2", RequestUsage(model="m"), datetime(2026, 11, 10, 9, tzinfo=UTC)),
        RequestEvent("e3", RequestUsage(model="m"), datetime(2026, 11, 10, 10, tzinfo=UTC)),
    ]
    # $1 a request (and no tokens), so estimates are easy to work out.
    Price.objects.create(
        provider=provider("openai"),
        model="m",
        valid_from=datetime(2020, 1, 1, tzinfo=UTC),
        per_request=Decimal("1"),
    )
    request_events_record(account=account, events=events)
    manual_entry_create(
        account=account, day=date(2026, 11, 5), description="seats", cost=Decimal("8")
    )
    return user, account


def test_it_puts_official_estimated_and_manual_side_by_side():
    user, account = _setup()
    (row,) = selectors.reconciliation_month(workspace=user.personal_workspace, month_start=NOV)
    assert row.official == Decimal("90")  # 60 + 30
    assert row.estimated == Decimal("3")  # e1 + e2 + e3 at $1
    assert row.estimated_counted == Decimal("2")  # e1 falls on an official day
    assert row.manual == Decimal("8")
    assert row.counted == Decimal("100")  # 90 + 2 + 8
    # No invoice: the reference is the official total, 90 - 100 = -10 (-11.1 %)
    assert (row.reference_kind, row.variance, row.variance_pct) == (
        "official",
        Decimal("-10"),
        Decimal("-11.1"),
    )


def test_it_stores_one_invoice_row_per_account_and_month():
    user, account = _setup()
    invoice_set(account=account, month_start=NOV, amount=Decimal("120"), note="first")
    invoice_set(account=account, month_start=NOV, amount=Decimal("123.45"), note="corrected")
    (invoice,) = Invoice.objects.filter(account=account)
    assert (invoice.month, invoice.amount, invoice.currency, invoice.note) == (
        NOV,
        Decimal("123.45"),
        "USD",
        "corrected",
    )
    account.refresh_from_db()
    assert "invoices" not in account.config
    (row,) = selectors.reconciliation_month(workspace=user.personal_workspace, month_start=NOV)
    # 123.45 - 100 = 23.45; 23.45 / 123.45 = 19.0 %
    assert (row.reference_kind, row.variance, row.variance_pct) == (
        "invoice",
        Decimal("23.45"),
        Decimal("19.0"),
    )
    assert invoice_delete(account=account, month_start=NOV) is True
    assert invoice_delete(account=account, month_start=NOV) is False
    assert not Invoice.objects.exists()


@pytest.mark.parametrize(
    "amount", [Decimal("1e15"), Decimal("-1e15"), Decimal("NaN"), Decimal("Infinity")]
)
def test_it_refuses_an_invoice_out_of_bounds(amount):
    _, account = _setup()
    with pytest.raises(ValidationError) as info:
        invoice_set(account=account, month_start=NOV, amount=amount)
    assert "amount" in info.value.message_dict
    assert not Invoice.objects.exists()


def test_it_books_a_true_up_once_however_often_it_is_pressed():
    user, account = _setup()
    invoice_set(account=account, month_start=NOV, amount=Decimal("123.45"))
    first = true_up_book(account=account, month_start=NOV, today=TODAY)
    second = true_up_book(account=account, month_start=NOV, today=TODAY)
    ups = UsageRecord.objects.filter(tags__true_up="2026-11")
    assert list(ups) == [second] and first.pk != second.pk
    # 123.45 invoice - 100 counted = 23.45, booked on today (the month is still running)
    assert second.cost == Decimal("23.45") and second.bucket_start.date() == TODAY
    assert second.description == "True-up to invoice 2026-11" and second.source == "manual"
    assert selectors.spend_total(
        workspace=user.personal_workspace, start=NOV, end=date(2026, 12, 1)
    ) == Decimal("123.45")
    # The roll-up holds the true-up once: 8 seats + 23.45
    manual = DailyUsage.objects.filter(account=account, source="manual")
    assert sum(d.cost for d in manual) == Decimal("31.45")
    (row,) = selectors.reconciliation_month(workspace=user.personal_workspace, month_start=NOV)
    assert row.true_up == Decimal("23.45") and row.manual == Decimal("8")


def test_it_books_a_negative_true_up_when_the_invoice_is_lower():
    user, account = _setup()
    invoice_set(account=account, month_start=date(2026, 11, 1), amount=Decimal("95"))
    record = true_up_book(account=account, month_start=NOV, today=TODAY)
    assert record.cost == Decimal("-5")  # 95 - 100
    assert selectors.spend_total(
        workspace=user.personal_workspace, start=NOV, end=date(2026, 12, 1)
    ) == Decimal("95")


def test_it_books_a_past_month_on_its_last_day_and_nothing_when_it_matches():
    user, account = _setup()
    oct_start = date(2026, 10, 1)
    manual_entry_create(account=account, day=date(2026, 10, 7), description="x", cost=Decimal("4"))
    invoice_set(account=account, month_start=oct_start, amount=Decimal("4.00"))
    assert true_up_book(account=account, month_start=oct_start, today=TODAY) is None
    invoice_set(account=account, month_start=oct_start, amount=Decimal("6"))
    record = true_up_book(account=account, month_start=oct_start, today=TODAY)
    assert record.bucket_start.date() == date(2026, 10, 31) and record.cost == Decimal("2")


def test_it_refuses_a_true_up_without_an_invoice():
    _, account = _setup()
    with pytest.raises(ValidationError):
        true_up_book(account=account, month_start=NOV, today=TODAY)
    assert not UsageRecord.objects.filter(tags__true_up="2026-11").exists()


def test_it_serves_the_reconciliation_api(api_client):
    user, account = _setup()
    invoice_set(account=account, month_start=NOV, amount=Decimal("110"))
    api_client.force_authenticate(user)
    body = api_client.get("/api/reconciliation?month=2026-11").json()
    (row,) = body["accounts"]
    assert body["month"] == "2026-11"
    assert Decimal(row["official"]) == 90 and Decimal(row["counted"]) == 100
    assert Decimal(row["invoice"]) == 110 and Decimal(row["variance"]) == 10  # 110 - 100
    assert row["variance_pct"] == "9.1"  # 10 / 110
    assert api_client.get("/api/reconciliation").json()["month"] == "2026-11"
    for bad in ("2026-13", "26-11", "november"):
        response = api_client.get(f"/api/reconciliation?month={bad}")
        assert response.status_code == 400 and "month" in response.json()


def test_it_scopes_reconciliation_to_the_user(api_client, client):
    user, account = _setup()
    stranger = UserFactory()
    api_client.force_authenticate(stranger)
    assert api_client.get("/api/reconciliation?month=2026-11").json()["accounts"] == []
    client.force_login(stranger)
    response = client.post(
        "/reconciliation/invoice/", {"account": account.pk, "month": "2026-11", "invoice": "1"}
    )
    assert response.status_code == 404
    response = client.post("/reconciliation/true-up/", {"account": account.pk, "month": "2026-11"})
    assert response.status_code == 404
    assert not Invoice.objects.exists()


def test_it_saves_invoices_and_trues_up_from_the_page(client):
    user, account = _setup()
    client.force_login(user)
    page = client.get("/reconciliation/?month=2026-11")
    assert page.status_code == 200 and b"Prod" in page.content
    bad = client.post(
        "/reconciliation/invoice/", {"account": account.pk, "month": "2026-11", "invoice": "abc"}
    )
    assert bad.status_code == 400 and b"invoice: Enter a number." in bad.content
    ok = client.post(
        "/reconciliation/invoice/",
        {"account": account.pk, "month": "2026-11", "invoice": "120", "note": "Nov bill #42"},
    )
    assert ok.status_code == 302 and ok["Location"] == "/reconciliation/?month=2026-11"
    page = client.get("/reconciliation/?month=2026-11").content.decode()
    assert 'value="120"' in page and 'value="Nov bill #42"' in page
    client.post("/reconciliation/true-up/", {"account": account.pk, "month": "2026-11"})
    client.post("/reconciliation/true-up/", {"account": account.pk, "month": "2026-11"})
    # 120 - 100 = 20, booked once
    assert [r.cost for r in UsageRecord.objects.filter(tags__true_up="2026-11")] == [Decimal(20)]
    assert Invoice.objects.get(account=account, month=NOV).amount == Decimal("120")
    cleared = client.post(
        "/reconciliation/invoice/", {"account": account.pk, "month": "2026-11", "invoice": ""}
    )
    assert cleared.status_code == 302 and not Invoice.objects.exists()


def test_it_sets_reads_and_removes_invoices_through_the_api(api_client):
    user, account = _setup()
    api_client.force_authenticate(user)
    url = f"/api/accounts/{account.pk}/invoices/2026-11"
    assert api_client.get(url).status_code == 404
    for _ in range(2):  # PUT replaces: twice leaves one row
        response = api_client.put(url, {"amount": "123.45", "note": "Nov bill"}, format="json")
        assert response.status_code == 200, response.content
    body = response.json()
    assert (body["month"], body["amount"], body["currency"], body["note"]) == (
        "2026-11",
        "123.450000000000",
        "USD",
        "Nov bill",
    )
    assert api_client.get(url).json() == body
    assert api_client.get(f"/api/accounts/{account.pk}/invoices").json() == [body]
    assert Invoice.objects.get(account=account, month=NOV).amount == Decimal("123.45")
    # GET -> PUT of the same body changes nothing.
    assert api_client.put(url, body, format="json").json()["amount"] == "123.450000000000"
    recon = api_client.get("/api/reconciliation?month=2026-11").json()["accounts"][0]
    assert recon["invoice"] == "123.450000000000" and Decimal(recon["variance"]) == Decimal("23.45")
    assert api_client.delete(url).status_code == 204
    assert api_client.get(url).status_code == 404 and api_client.delete(url).status_code == 404
    assert not Invoice.objects.exists()


@pytest.mark.parametrize(
    ("month", "body", "field"),
    [
        ("2026-11", {"amount": "abc"}, "amount"),
        ("2026-11", {}, "amount"),
        ("2026-11", {"amount": "1000000000000000"}, "amount"),  # 1e15: beyond the bound
        ("2026-11", {"amount": "NaN"}, "amount"),
        ("2026-11", {"amount": "1", "currency": "EUR"}, "currency"),
        ("2026-11", {"amount": "1", "note": "x" * 501}, "note"),
        ("2026-13", {"amount": "1"}, "month"),
        ("11-2026", {"amount": "1"}, "month"),
    ],
)
def test_it_refuses_a_bad_invoice_naming_the_field(api_client, month, body, field):
    user, account = _setup()
    api_client.force_authenticate(user)
    response = api_client.put(f"/api/accounts/{account.pk}/invoices/{month}", body, format="json")
    assert response.status_code == 400 and field in response.json(), response.content
    assert not Invoice.objects.exists()


def test_it_keeps_invoices_to_their_owner(api_client):
    user, account = _setup()
    invoice_set(account=account, month_start=NOV, amount=Decimal("5"))
    api_client.force_authenticate(UserFactory())
    base = f"/api/accounts/{account.pk}/invoices"
    assert api_client.get(base).status_code == 404
    assert api_client.get(f"{base}/2026-11").status_code == 404
    assert api_client.put(f"{base}/2026-11", {"amount": "1"}, format="json").status_code == 404
    assert api_client.delete(f"{base}/2026-11").status_code == 404
    assert Invoice.objects.get().amount == Decimal("5")


def test_it_documents_the_invoice_api_in_the_schema(api_client):
    user, _ = _setup()
    api_client.force_authenticate(user)
    schema = api_client.get("/api/schema/", {"format": "json"}).json()
    detail = next(p for p in schema["paths"] if p.endswith("/invoices/{month}"))
    assert set(schema["paths"][detail]) >= {"get", "put", "delete"}
    assert any(p.endswith("/invoices") for p in schema["paths"])
    config = schema["components"]["schemas"]["Account"]["properties"]["config"]
    titles = {alt["title"] for alt in config["anyOf"]}
    # One settings shape per registered provider.
    assert "GitHub Copilot settings" in titles
    assert titles == {f"{label} settings" for label, _ in ADAPTERS.values()}
