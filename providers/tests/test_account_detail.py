"""The account page: this month's spend by source and against budget, chart, models, keys, syncs."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
import time_machine

from accounts.tests.factories import UserFactory
from providers.services import ingest_key_create
from providers.tests.factories import AccountFactory, provider
from usage.models import Source, SyncRun, UsageRecord
from usage.services.records import manual_entry_create
from usage.services.rollup import rollup_rebuild

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _frozen():
    with time_machine.travel("2026-11-15 12:00:00Z", tick=False):
        yield


def _record(account, *, day: date, source: str, cost: str | None, model: str, key: str):
    UsageRecord.objects.create(
        account=account,
        provider_id=account.provider_id,
        natural_key=key,
        model=model,
        bucket_start=datetime(day.year, day.month, day.day, tzinfo=UTC),
        granularity="day",
        source=source,
        cost=None if cost is None else Decimal(cost),
        input_tokens=1000,
        request_count=1,
    )
    rollup_rebuild(account_id=account.pk, days=[day], source=source)


@pytest.fixture
def setup():
    user = UserFactory()
    account = AccountFactory(
        workspace=user.personal_workspace,
        provider=provider("openai"),
        name="OpenAI prod",
        monthly_budget=Decimal(200),
    )
    other = AccountFactory(
        workspace=user.personal_workspace, provider=provider("anthropic"), name="Claude"
    )
    _record(
        account,
        day=date(2026, 11, 3),
        source=Source.OFFICIAL,
        cost="40.00",
        model="gpt-4o",
        key="day:a",
    )
    _record(
        account,
        day=date(2026, 11, 12),
        source=Source.ESTIMATED,
        cost="7.50",
        model="gpt-4o-mini",
        key="req:b",
    )
    manual_entry_create(
        account=account, day=date(2026, 11, 5), description="Invoice fee", cost=Decimal("12.50")
    )
    # Last month and another account must not count.
    _record(
        account,
        day=date(2026, 10, 30),
        source=Source.OFFICIAL,
        cost="999",
        model="gpt-4o",
        key="day:old",
    )
    _record(
        other,
        day=date(2026, 11, 3),
        source=Source.OFFICIAL,
        cost="555",
        model="claude",
        key="day:c",
    )
    return user, account, other


def test_it_shows_this_months_spend_split_and_budget(client, setup):
    user, account, _ = setup
    client.force_login(user)
    response = client.get(f"/accounts/{account.pk}/overview/")
    assert response.status_code == 200
    html = response.content.decode()
    # 40.00 official + 7.50 estimated + 12.50 manual = 60.00; 60 / 200 = 30.0 % of budget.
    assert re.search(r'data-testid="account-total">\$60\.00<', html)
    assert 'data-testid="split-official">$40.00<' in html
    assert 'data-testid="split-estimated">$7.50<' in html
    assert 'data-testid="split-manual">$12.50<' in html
    assert "30.0% of the $200.00 monthly budget" in html
    assert "$999" not in html and "$555" not in html
    # Models used this month, most expensive first: gpt-4o $40, Invoice fee $12.50, mini $7.50.
    models = re.search(r'data-testid="account-models">(.*?)</table>', html, re.S).group(1)
    assert all(m in models for m in ("gpt-4o<", "gpt-4o-mini", "$12.50"))
    assert models.index("gpt-4o<") < models.index("gpt-4o-mini")


def test_it_feeds_the_dashboard_chart_code_from_a_data_block(client, setup):
    user, account, _ = setup
    client.force_login(user)
    html = client.get(f"/accounts/{account.pk}/overview/").content.decode()
    assert 'data-chart="daily" data-source="account-daily-data"' in html
    assert "/static/js/dashboard.js" in html
    assert "<script>" not in html and " style=" not in html and " onclick=" not in html
    block = re.search(r'id="account-daily-data" type="application/json">(.*?)</script>', html)
    chart = json.loads(block.group(1))
    # 1..15 November (today included): 15 days, one dataset per source with spend.
    assert len(chart["labels"]) == 15 and chart["labels"][0] == "2026-11-01"
    by_label = {ds["label"]: ds["data"] for ds in chart["datasets"]}
    assert set(by_label) == {"Official", "Estimated", "Manual"}
    assert by_label["Official"][2] == "40" and by_label["Manual"][4] == "12.5"
    assert by_label["Estimated"][11] == "7.5"


def test_it_lists_ingest_keys_and_latest_syncs_with_links(client, setup):
    user, account, _ = setup
    ingest_key_create(account=account, name="billing-svc")
    for i in range(12):
        SyncRun.objects.create(
            account=account,
            window_start=date(2026, 11, 1),
            window_end=date(2026, 11, 15),
            status=SyncRun.Status.FAILED if i == 11 else SyncRun.Status.SUCCEEDED,
            trigger="schedule",
            fetched=i,
            error_message="provider error (500)" if i == 11 else "",
        )
    client.force_login(user)
    html = client.get(f"/accounts/{account.pk}/overview/").content.decode()
    keys = re.search(r'data-testid="account-keys">(.*?)</table>', html, re.S).group(1)
    assert "billing-svc" in keys and "cti_" in keys
    syncs = re.search(r'data-testid="account-syncs">(.*?)</table>', html, re.S).group(1)
    assert syncs.count("<tr>") == 1 + 10  # header + the latest ten
    assert "provider error (500)" in syncs
    for url in (
        f"/accounts/{account.pk}/",  # edit
        f"/accounts/{account.pk}/test/",
        f"/accounts/{account.pk}/ingest-keys/",
        f"/accounts/{account.pk}/syncs/",
    ):
        assert url in html


def test_it_says_unpriced_rather_than_zero_percent(client):
    user = UserFactory()
    account = AccountFactory(
        workspace=user.personal_workspace, provider=provider("groq"), monthly_budget=Decimal(20)
    )
    _record(
        account,
        day=date(2026, 11, 14),
        source=Source.ESTIMATED,
        cost=None,
        model="mystery",
        key="req:x",
    )
    client.force_login(user)
    html = client.get(f"/accounts/{account.pk}/overview/").content.decode()
    assert re.search(r'data-testid="account-total">unpriced<', html)
    assert "0.0%" not in html and "all spend so far is unpriced" in html


def test_it_is_only_for_the_owner(client, setup):
    _, account, _ = setup
    client.force_login(UserFactory())
    assert client.get(f"/accounts/{account.pk}/overview/").status_code == 404
    client.logout()
    assert client.get(f"/accounts/{account.pk}/overview/").status_code == 302


def test_it_is_linked_from_the_accounts_list_and_dashboard_cards(client, setup):
    user, account, other = setup
    client.force_login(user)
    for page in ("/accounts/", "/"):
        html = client.get(page).content.decode()
        assert f'href="/accounts/{account.pk}/overview/"' in html
        assert f'href="/accounts/{other.pk}/overview/"' in html


def test_it_shows_the_budgets_pages_budget_for_the_account(client, setup):
    from alerts.tests.factories import BudgetFactory

    user, account, other = setup
    BudgetFactory(
        workspace=user.personal_workspace, scope="account", account=account, amount=Decimal("80")
    )
    BudgetFactory(
        workspace=user.personal_workspace, scope="account", account=other, amount=Decimal("1")
    )
    client.force_login(user)
    html = client.get(f"/accounts/{account.pk}/overview/").content.decode()
    rows = re.findall(r'data-testid="account-budget-row">(.*?)</p>', html, re.S)
    # $60.00 of $80.00 = 75.0 %; the other account's budget is not shown here.
    assert len(rows) == 1 and "75.0% of the $80.00 budget" in rows[0]
