"""Money in the API: one format everywhere, "0.000000000000" and never "0E-12".

Every money field of every endpoint goes through costtracker.api.money_str (via MoneyField):
a plain decimal string with exactly 12 places; null = unpriced.
"""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal

import pytest
import time_machine
from rest_framework import serializers

from accounts.tests.factories import UserFactory
from alerts import services as alert_services
from costtracker.api import decimal_str, is_money_str, money_str
from providers.tests.factories import AccountFactory
from usage.services.records import manual_entry_create

pytestmark = pytest.mark.django_db

NOW = "2026-11-15 12:00:00Z"


def test_it_formats_money_as_a_plain_string_with_twelve_places():
    assert money_str(Decimal("0E-12")) == "0.000000000000"  # was str() -> "0E-12"
    assert money_str(Decimal(0)) == "0.000000000000"
    assert money_str(Decimal("1.25")) == "1.250000000000"
    assert money_str(Decimal("-0.5")) == "-0.500000000000"
    assert money_str(Decimal("1E+3")) == "1000.000000000000"
    assert money_str(None) is None
    # A value wider than the default 28-digit context still formats (reads never fail).
    assert money_str(Decimal("9999999999999999999999.999999999999")) == (
        "9999999999999999999999.999999999999"
    )


def test_it_formats_other_decimals_without_an_exponent():
    assert decimal_str(Decimal("0E+1")) == "0"
    assert decimal_str(Decimal("1.5E-7")) == "0.00000015"
    assert decimal_str(Decimal("-0")) == "0"
    assert decimal_str(None) is None


MONEY_KEYS = {
    "cost",
    "total_cost",
    "monthly_budget",
    "amount",
    "spent",
    "month_to_date",
    "projected_total",
    "low",
    "high",
    "official",
    "estimated",
    "estimated_counted",
    "manual",
    "true_up",
    "counted",
    "invoice",
    "reference",
    "variance",
}


def _walk(value, path=""):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _walk(item, f"{path}[{index}]")
    else:
        yield path, value


def _money_fields(body) -> list[tuple[str, object]]:
    found = []
    for path, value in _walk(body):
        key = path.rsplit(".", 1)[-1]
        parent = path.rsplit(".", 2)[-2] if path.count(".") >= 2 else ""
        if key in MONEY_KEYS or parent.startswith("by_source"):
            found.append((path, value))
    return found


@time_machine.travel(NOW, tick=False)
def test_it_serializes_every_money_field_of_every_endpoint_in_one_format(api_client):
    user = UserFactory()
    account = AccountFactory(workspace=user.personal_workspace, monthly_budget=Decimal("0"))
    # A zero entry (the "0E-12" case) and a priced one, both this month.
    manual_entry_create(account=account, day=date(2026, 11, 2), description="free", cost=0)
    manual_entry_create(
        account=account, day=date(2026, 11, 3), description="seat", cost=Decimal("19")
    )
    alert_services.budget_create(
        workspace=user.personal_workspace, scope="overall", amount=Decimal("10")
    )
    api_client.force_authenticate(user)

    endpoints = [
        "/api/usage",
        "/api/usage/by-service",
        "/api/usage/daily?days=7",
        "/api/usage/breakdown?group_by=model",
        "/api/usage/history",
        "/api/usage/forecast",
        "/api/reconciliation",
        "/api/budgets",
        "/api/accounts",
        f"/api/accounts/{account.pk}",
        "/api/alerts",
        "/api/export?format=json",
    ]
    seen = 0
    for url in endpoints:
        response = api_client.get(url)
        assert response.status_code == 200, (url, response.status_code)
        body = json.loads(
            b"".join(response.streaming_content) if response.streaming else response.content
        )
        fields = _money_fields(body)
        assert fields, f"{url}: no money field found"
        for path, value in fields:
            assert value is None or is_money_str(value), (url, path, value)
        seen += len(fields)
        assert "E-" not in json.dumps(body) and "E+" not in json.dumps(body), url
    # A figure worked by hand: the month's total is $0 + $19 = $19.
    summary = api_client.get("/api/usage").json()
    assert summary["total_cost"] == "19.000000000000"
    assert summary["accounts"][0]["monthly_budget"] == "0.000000000000"
    daily = api_client.get("/api/usage/daily?days=14").json()
    zero_day = next(d for d in daily if d["date"] == "2026-11-02")
    assert zero_day["cost"] == "0.000000000000"  # the zero entry: never "0E-12"
    assert seen > 30
    # By model: the free entry and the seat are both "(no model)": $0 + $19 = $19.
    breakdown = api_client.get("/api/usage/breakdown?group_by=model").json()
    assert breakdown["groups"][0]["cost"] == "19.000000000000"
    assert breakdown["groups"][0]["daily"][0] == {"date": "2026-11-02", "cost": "0.000000000000"}


@time_machine.travel(NOW, tick=False)
def test_it_answers_a_manual_entry_post_with_money_in_the_one_format(api_client):
    user = UserFactory()
    account = AccountFactory(workspace=user.personal_workspace)
    api_client.force_authenticate(user)
    response = api_client.post(
        "/api/usage/records",
        {"account": account.pk, "date": "2026-11-14", "description": "free tier", "cost": "0"},
        format="json",
    )
    assert response.status_code == 201, response.content
    assert response.json()["cost"] == "0.000000000000"
    budget = api_client.post("/api/budgets", {"amount": "12.5"}, format="json")
    assert budget.status_code == 201, budget.content
    # $12.50 budget, $0 spent this month.
    assert budget.json()["amount"] == "12.500000000000"
    assert budget.json()["spent"] == "0.000000000000"


def test_it_accepts_back_the_money_it_answered_with():
    # GET gives every amount 12 places; a 2-place field must take "19.000000000000" back as
    # 19.00, and still refuse a real third place.
    from costtracker.api import MoneyField

    field = MoneyField(max_digits=20, decimal_places=2)
    assert field.to_internal_value("19.000000000000") == Decimal("19.00")
    with pytest.raises(serializers.ValidationError):
        field.to_internal_value("19.001")
