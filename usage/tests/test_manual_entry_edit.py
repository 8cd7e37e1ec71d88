"""Manual entries edited and deleted in the UI: exact roll-up, owner only, manual only."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
import time_machine

from accounts.tests.factories import UserFactory
from providers.tests.factories import AccountFactory, provider
from usage.models import DailyUsage, Source, UsageRecord
from usage.services.records import (
    manual_entry_create,
    manual_entry_delete,
    manual_entry_update,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _frozen():
    with time_machine.travel("2026-11-15 12:00:00Z", tick=False):
        yield


@pytest.fixture
def owner():
    return UserFactory()


@pytest.fixture
def account(owner):
    return AccountFactory(
        workspace=owner.personal_workspace, provider=provider("copilot"), name="Copilot org"
    )


def _rollup() -> dict[tuple[int, str], Decimal]:
    return {
        (r.account_id, r.day.isoformat()): r.cost
        for r in DailyUsage.objects.filter(source=Source.MANUAL)
    }


def _form(account, **changes) -> dict:
    return {
        "account": account.pk,
        "date": "2026-11-10",
        "description": "Copilot Business, 12 seats",
        "cost": "228.00",
        "seats": "12",
        **changes,
    }


def _entry(account, day=date(2026, 11, 10), cost="228.00", description="seats"):
    return manual_entry_create(
        account=account, day=day, description=description, cost=Decimal(cost)
    )


def test_it_updates_an_entry_and_keeps_the_rollup_exact_run_twice(owner, account):
    other = _entry(account, cost="10.00", description="other")
    record = _entry(account)
    for _ in range(2):
        manual_entry_update(
            record=record,
            account=account,
            day=date(2026, 11, 12),
            description="seats, corrected",
            cost=Decimal("190.00"),
            seats=Decimal(10),
        )
    # The 10th keeps only the other entry ($10); the 12th has the corrected $190.
    assert _rollup() == {
        (account.pk, "2026-11-10"): Decimal("10.00"),
        (account.pk, "2026-11-12"): Decimal("190.00"),
    }
    assert UsageRecord.objects.count() == 2
    record.refresh_from_db()
    assert (record.description, record.line_item, record.seats) == (
        "seats, corrected",
        "seats, corrected",
        Decimal(10),
    )
    assert other.pk != record.pk


def test_it_moves_an_entry_between_accounts(owner, account):
    second = AccountFactory(
        workspace=owner.personal_workspace, provider=provider("openai"), name="OpenAI"
    )
    record = _entry(account, cost="50.00")
    manual_entry_update(
        record=record, account=second, day=date(2026, 11, 10), description="x", cost=Decimal(50)
    )
    # The copilot account's day drops to nothing (no row), the OpenAI account gains $50.
    assert _rollup() == {(second.pk, "2026-11-10"): Decimal("50.00")}
    assert DailyUsage.objects.get().provider_id == second.provider_id


def test_it_deletes_an_entry_run_twice(owner, account):
    keep = _entry(account, cost="1.25", description="keep")
    record = _entry(account, cost="3.50")
    manual_entry_delete(record=record)
    manual_entry_delete(record=record)  # already gone: nothing happens
    assert list(UsageRecord.objects.values_list("pk", flat=True)) == [keep.pk]
    assert _rollup() == {(account.pk, "2026-11-10"): Decimal("1.25")}


def test_it_refuses_to_change_non_manual_records(owner, account):
    synced = UsageRecord.objects.create(
        account=account,
        provider_id=account.provider_id,
        natural_key="day:2026-11-10|gpt|x",
        bucket_start=datetime(2026, 11, 10, tzinfo=UTC),
        granularity="day",
        source=Source.OFFICIAL,
        cost=Decimal(1),
    )
    with pytest.raises(ValueError):
        manual_entry_delete(record=synced)
    with pytest.raises(ValueError):
        manual_entry_update(record=synced, account=account, day=date(2026, 11, 10))
    assert UsageRecord.objects.filter(pk=synced.pk).exists()


def test_it_edits_through_the_page_and_the_dashboard_follows(client, owner, account):
    record = _entry(account)
    client.force_login(owner)
    page = client.get(f"/usage/{record.pk}/edit/").content.decode()
    assert 'value="228.000000000000"' in page or 'value="228.00' in page
    assert "Save and add another" in page
    response = client.post(f"/usage/{record.pk}/edit/", _form(account, cost="190.00"))
    assert response.status_code == 302
    assert response["Location"] == "/usage/history/?source=manual"
    # $228 became $190 on the same day.
    assert _rollup() == {(account.pk, "2026-11-10"): Decimal("190.00")}
    assert "$190.00" in client.get("/?period=month").content.decode()


def test_it_keeps_bad_edits_on_the_form_without_writing(client, owner, account):
    record = _entry(account)
    client.force_login(owner)
    response = client.post(f"/usage/{record.pk}/edit/", _form(account, cost="-1"))
    assert response.status_code == 200
    assert "greater than or equal to 0" in response.content.decode()
    record.refresh_from_db()
    assert record.cost == Decimal("228.00")


def test_it_saves_and_offers_another_with_account_and_day_chosen(client, owner, account):
    client.force_login(owner)
    response = client.post("/usage/new/", {**_form(account), "add_another": "1"})
    assert response.status_code == 302
    assert response["Location"] == f"/usage/new/?account={account.pk}&date=2026-11-10"
    page = client.get(response["Location"]).content.decode()
    assert f'<option value="{account.pk}" selected>' in page
    assert 'value="2026-11-10"' in page
    record = UsageRecord.objects.get()
    edited = client.post(
        f"/usage/{record.pk}/edit/", {**_form(account, cost="1"), "add_another": "1"}
    )
    assert edited["Location"] == f"/usage/new/?account={account.pk}&date=2026-11-10"


def test_it_deletes_through_the_page_after_confirming(client, owner, account):
    record = _entry(account)
    client.force_login(owner)
    confirm = client.get(f"/usage/{record.pk}/delete/")
    assert confirm.status_code == 200 and "Delete this manual entry?" in confirm.content.decode()
    assert UsageRecord.objects.exists()
    response = client.post(f"/usage/{record.pk}/delete/", {"next": "/usage/history/"})
    assert response["Location"] == "/usage/history/"
    assert not UsageRecord.objects.exists() and not DailyUsage.objects.exists()


def test_it_ignores_a_next_url_off_site(client, owner, account):
    record = _entry(account)
    client.force_login(owner)
    response = client.post(f"/usage/{record.pk}/delete/", {"next": "https://evil.example/"})
    assert response["Location"] == "/usage/history/?source=manual"


def test_it_404s_for_someone_elses_entry_and_for_synced_records(client, owner, account):
    record = _entry(account)
    synced = UsageRecord.objects.create(
        account=account,
        provider_id=account.provider_id,
        natural_key="day:2026-11-10|gpt|x",
        bucket_start=datetime(2026, 11, 10, tzinfo=UTC),
        granularity="day",
        source=Source.OFFICIAL,
        cost=Decimal(1),
    )
    client.force_login(UserFactory())
    for url in (f"/usage/{record.pk}/edit/", f"/usage/{record.pk}/delete/"):
        assert client.get(url).status_code == 404
        assert client.post(url, _form(account)).status_code == 404
    client.force_login(owner)
    for url in (f"/usage/{synced.pk}/edit/", f"/usage/{synced.pk}/delete/"):
        assert client.get(url).status_code == 404
        assert client.post(url, _form(account)).status_code == 404
    assert UsageRecord.objects.count() == 2


def test_it_links_edit_and_delete_from_manual_history_rows_only(client, owner, account):
    record = _entry(account)
    UsageRecord.objects.create(
        account=account,
        provider_id=account.provider_id,
        natural_key="day:2026-11-10|gpt|x",
        bucket_start=datetime(2026, 11, 10, tzinfo=UTC),
        granularity="day",
        source=Source.OFFICIAL,
        cost=Decimal(1),
    )
    client.force_login(owner)
    page = client.get("/usage/history/").content.decode()
    assert page.count("/edit/?next=") == 1
    assert f'href="/usage/{record.pk}/edit/?next=/usage/history/"' in page
    assert f'href="/usage/{record.pk}/delete/?next=/usage/history/"' in page


def test_it_renders_the_forms_without_inline_script_style_or_handlers(client, owner, account):
    record = _entry(account)
    client.force_login(owner)
    for url in ("/usage/new/", f"/usage/{record.pk}/edit/", f"/usage/{record.pk}/delete/"):
        html = client.get(url).content.decode()
        assert " style=" not in html, url
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), url
        assert not re.search(r"\son[a-z]+=", html), url
