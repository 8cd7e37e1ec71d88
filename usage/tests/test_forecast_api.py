from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine

from accounts.tests.factories import UserFactory
from providers.adapters.base import UsageLine
from providers.tests.factories import AccountFactory
from usage.services.records import usage_lines_replace_window

pytestmark = pytest.mark.django_db


def _daily(account, start: date, end: date, cost: str):
    days = (end - start).days
    usage_lines_replace_window(
        account=account,
        start=start,
        end=end,
        lines=[
            UsageLine(day=start + timedelta(days=i), model="m", line_item="m", cost=Decimal(cost))
            for i in range(days)
        ],
    )


@time_machine.travel(datetime(2026, 11, 11, 12, 0, tzinfo=UTC), tick=False)
def test_it_projects_a_steady_spend_to_month_end(api_client):
    user = UserFactory()
    account = AccountFactory(workspace=user.personal_workspace)
    # $10 every day from Sep 12 to Nov 10; nothing yet today (Nov 11)
    _daily(account, date(2026, 9, 12), date(2026, 11, 11), "10")
    api_client.force_authenticate(user)

    body = api_client.get("/api/usage/forecast").json()

    # Nov 1..10 = 10 days x $10 = $100 so far
    assert Decimal(body["month_to_date"]) == Decimal("100")
    # A flat $10/day with no spread: 20 more days (11..30) x $10 = $200 -> $300, range $300-$300
    assert Decimal(body["projected_total"]) == Decimal("300")
    assert Decimal(body["low"]) == Decimal("300") and Decimal(body["high"]) == Decimal("300")
    assert all(
        isinstance(body[k], str) for k in ("month_to_date", "projected_total", "low", "high")
    )
    assert (body["days_elapsed"], body["days_in_month"], body["month"]) == (10, 30, "2026-11")
    assert len(body["daily_projection"]) == 20
    assert body["daily_projection"][0]["date"] == "2026-11-11"
    assert Decimal(body["daily_projection"][0]["amount"]) == Decimal("10")
    assert "E" not in body["low"]  # plain decimal strings, never exponent notation
    assert body["method"]


@time_machine.travel(datetime(2026, 11, 11, 12, 0, tzinfo=UTC), tick=False)
def test_it_forecasts_only_the_requesting_users_spend(api_client):
    me, other = UserFactory(), UserFactory()
    _daily(
        AccountFactory(workspace=other.personal_workspace),
        date(2026, 11, 1),
        date(2026, 11, 11),
        "50",
    )
    api_client.force_authenticate(me)
    body = api_client.get("/api/usage/forecast").json()
    assert Decimal(body["month_to_date"]) == 0
    assert Decimal(body["projected_total"]) == 0 and Decimal(body["high"]) == 0


def test_it_uses_the_users_month_for_the_forecast(api_client):
    # Nov 30 20:00 UTC is Dec 1 in Auckland: the forecast is for December.
    user = UserFactory(time_zone="Pacific/Auckland")
    api_client.force_authenticate(user)
    with time_machine.travel(datetime(2026, 11, 30, 20, 0, tzinfo=UTC), tick=False):
        body = api_client.get("/api/usage/forecast").json()
    assert (body["month"], body["days_in_month"], body["days_elapsed"]) == ("2026-12", 31, 0)


def test_it_requires_authentication(api_client):
    assert api_client.get("/api/usage/forecast").status_code in (401, 403)
