"""Manual entries: validation with the field named, exact storage, roll-up, UI form."""

from __future__ import annotations

from decimal import Decimal

import pytest
import time_machine

from accounts.tests.factories import UserFactory
from providers.tests.factories import AccountFactory, provider
from usage.models import DailyUsage, UsageRecord

pytestmark = pytest.mark.django_db

GOOD = {
    "date": "2026-11-10",
    "description": "Copilot Business, 12 seats",
    "cost": "228.00",
    "seats": "12",
}


@pytest.fixture
def user_and_account():
    user = UserFactory()
    return user, AccountFactory(
        workspace=user.personal_workspace,
        provider=provider("copilot"),
        config={"organization": "acme"},
    )


@time_machine.travel("2026-11-15 12:00:00Z", tick=False)
@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"cost": "-1"}, "cost"),
        ({"cost": "abc"}, "cost"),
        ({"cost": "1e400"}, "cost"),
        ({"cost": None}, "cost"),
        ({"date": "2026-02-30"}, "date"),
        ({"date": "yesterday"}, "date"),
        ({"date": "2027-01-01"}, "date"),
        ({"date": "1999-12-31"}, "date"),
        ({"account": 999999}, "account"),
        ({"account": "x"}, "account"),
        ({"seats": "-3"}, "seats"),
        ({"input_tokens": -5}, "input_tokens"),
        ({"input_tokens": 10**30}, "input_tokens"),
        ({"description": "", "model": ""}, "description"),
        ({"tags": "not-a-dict"}, "tags"),
    ],
)
def test_it_rejects_bad_input_naming_the_field(api_client, user_and_account, change, field):
    user, account = user_and_account
    api_client.force_authenticate(user)
    response = api_client.post(
        "/api/usage/records", {**GOOD, "account": account.pk, **change}, format="json"
    )
    assert response.status_code == 400, response.content
    assert field in response.json()
    assert not UsageRecord.objects.exists()  # nothing partial


def test_it_rejects_malformed_json_and_non_objects(api_client, user_and_account):
    user, _ = user_and_account
    api_client.force_authenticate(user)
    bad = api_client.post("/api/usage/records", "{not json", content_type="application/json")
    assert bad.status_code == 400
    listed = api_client.post("/api/usage/records", "[1, 2]", content_type="application/json")
    assert listed.status_code == 400


@time_machine.travel("2026-11-15 12:00:00Z", tick=False)
def test_it_stores_a_manual_entry_exactly_and_rolls_it_up(api_client, user_and_account):
    user, account = user_and_account
    api_client.force_authenticate(user)
    response = api_client.post(
        "/api/usage/records",
        {**GOOD, "account": account.pk, "cost": "0.00002"},
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["source"] == "manual" and body["cost"] == "0.000020000000"
    record = UsageRecord.objects.get()
    assert record.cost == Decimal("0.00002")  # the seeds' DECIMAL(10,4) would have said 0.0000
    rollup = DailyUsage.objects.get()
    assert (rollup.day.isoformat(), rollup.source, rollup.cost) == (
        "2026-11-10",
        "manual",
        Decimal("0.00002"),
    )
    summary = api_client.get("/api/usage").json()
    assert summary["total_cost"] == "0.000020000000"


@time_machine.travel("2026-11-15 12:00:00Z", tick=False)
def test_it_shows_form_errors_in_place_and_saves_a_good_entry(client, user_and_account):
    user, account = user_and_account
    client.force_login(user)
    response = client.post(
        "/usage/new/",
        {"account": account.pk, "date": "2026-11-10", "description": "seats", "cost": "-5"},
    )
    assert response.status_code == 200
    assert "Ensure this value is greater than or equal to 0" in response.content.decode()
    assert not UsageRecord.objects.exists()
    response = client.post(
        "/usage/new/",
        {
            "account": account.pk,
            "date": "2026-11-10",
            "description": "Copilot seats",
            "cost": "228",
            "seats": "12",
        },
    )
    assert response.status_code == 302
    page = client.get("/").content.decode()
    assert "$228.00" in page and "Manual" in page
