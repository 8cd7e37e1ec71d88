"""Fixed charges (manual entries, synced seat lines) are counted once, never extrapolated.

The dashboard forecast, GET /api/usage/forecast, the forecast alert and the anomaly rules all
use the one split in usage.selectors (FIXED_CHARGE).
"""

from __future__ import annotations

import io
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine

from alerts import selectors, services
from alerts.models import Alert, Budget
from providers.adapters.base import UsageLine
from providers.tests.factories import AccountFactory, provider
from usage.models import DailyUsage, Source
from usage.selectors import forecast_for_workspace, spend_split
from usage.services.records import manual_entry_create, usage_lines_replace_window

pytestmark = pytest.mark.django_db

DEC_1 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
DEC_6 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def usage(account, day: date, amount: str, model: str = "gpt-4o") -> None:
    """A roll-up row as the proxy or ingestion leaves it: usage-based spend."""
    DailyUsage.objects.create(
        account=account,
        provider=account.provider,
        day=day,
        source=Source.ESTIMATED,
        model=model,
        cost=Decimal(amount),
        input_tokens=1000,
        record_count=1,
    )


def seat_lines(account, start: date, end: date, seats: int, cost: str) -> None:
    """Synced Copilot-style seat lines: one per day, prorated (seats × price ÷ days)."""
    usage_lines_replace_window(
        account=account,
        start=start,
        end=end,
        lines=[
            UsageLine(
                day=start + timedelta(days=i),
                model="",
                line_item="seats:business",
                seats=Decimal(seats),
                cost=Decimal(cost),
            )
            for i in range((end - start).days)
        ],
    )


@time_machine.travel(DEC_1, tick=False)
def test_it_does_not_extrapolate_a_single_seat_charge(api_client):
    # The reported case: one $190 manual entry against a $200 budget, on the 1st.
    account = AccountFactory(provider=provider("copilot"), monthly_budget=Decimal("200"))
    manual_entry_create(
        account=account, day=date(2026, 12, 1), cost=Decimal("190"), seats=Decimal("10")
    )

    # Fixed charges only: $190 booked, no usage to extrapolate -> $190 for December.
    forecast = forecast_for_workspace(workspace=account.workspace)
    assert forecast.month_to_date == Decimal("190")
    assert forecast.projected_total == Decimal("190")
    assert (forecast.low, forecast.high) == (Decimal("190"), Decimal("190"))
    api_client.force_authenticate(account.workspace.personal_for)
    body = api_client.get("/api/usage/forecast").json()
    assert Decimal(body["projected_total"]) == Decimal("190")

    services.alerts_evaluate_for_workspace(workspace=account.workspace)
    services.alerts_evaluate_for_workspace(
        workspace=account.workspace
    )  # twice: still the same alerts
    # $190 of $200 = 95 %: the 80 % threshold fires; $190 <= $200 projected: no forecast alert.
    kinds = sorted(
        Alert.objects.filter(workspace=account.workspace).values_list("kind", "threshold")
    )
    assert kinds == [(Alert.Kind.THRESHOLD, 80)]


@time_machine.travel(DEC_6, tick=False)
def test_it_adds_fixed_charges_to_the_usage_run_rate(api_client):
    # The demo's shape: a $190 seat charge on Dec 1, and $4/day of API usage on Dec 1-5.
    account = AccountFactory()
    manual_entry_create(
        account=account, day=date(2026, 12, 1), cost=Decimal("190"), description="Seats"
    )
    for day in range(1, 6):
        usage(account, date(2026, 12, day), "4")

    # Usage: $4 on each of 5 complete days -> mean $4/day (under 7 points: a flat mean), no
    # spread (every day equal). Dec 6-31 is 26 days x $4 = $104 still to come.
    # Total = $190 fixed + $20 usage so far + $104 = $314 (before: $194 on Dec 1 read as a
    # day's run-rate, (194 + 4 * 4) / 5 = $42/day -> $210 + 26 x $42 = $1,302).
    forecast = forecast_for_workspace(workspace=account.workspace)
    assert forecast.month_to_date == Decimal("210")
    assert forecast.projected_total == Decimal("314")
    assert (forecast.low, forecast.high) == (Decimal("314"), Decimal("314"))
    assert forecast.daily_projection[0] == (date(2026, 12, 6), Decimal("4"))
    api_client.force_authenticate(account.workspace.personal_for)
    body = api_client.get("/api/usage/forecast").json()
    assert Decimal(body["projected_total"]) == Decimal("314")
    assert Decimal(body["month_to_date"]) == Decimal("210")


@time_machine.travel(DEC_6, tick=False)
def test_it_raises_the_forecast_alert_on_usage_only():
    account = AccountFactory()
    user = account.workspace.personal_for
    manual_entry_create(account=account, day=date(2026, 12, 1), cost=Decimal("190"))
    for day in range(1, 6):
        usage(account, date(2026, 12, day), "4")
    # Projected $314 (as above). Against $320: within; against $300: $14 over.
    budget = services.budget_create(
        workspace=user.personal_workspace,
        scope=Budget.Scope.OVERALL,
        amount=Decimal("320"),
        forecast_alert=True,
    )
    assert not Alert.objects.filter(kind=Alert.Kind.FORECAST).exists()

    services.budget_update(budget=budget, amount=Decimal("300"))

    alert = Alert.objects.get(kind=Alert.Kind.FORECAST)
    # $210 spent; $300 is passed when 210 + 4n > 300, n = 23: the 23rd projected day from
    # Dec 6 is Dec 28.
    assert alert.message == (
        "All spend: On track to exceed the budget by $14.00 around day 28 (Dec 28)."
    )
    assert Decimal(alert.data["projected_total"]) == Decimal("314")


@time_machine.travel(DEC_6, tick=False)
def test_it_carries_a_synced_seat_line_to_month_end_once():
    # Synced seat lines are prorated: 10 seats x $19 / 31 days = $6.129... -> $6.13 a day,
    # synced for Dec 1-6 (the sync includes today).
    account = AccountFactory(provider=provider("copilot"))
    seat_lines(account, date(2026, 12, 1), date(2026, 12, 7), seats=10, cost="6.13")

    # Booked: 6 x $6.13 = $36.78. Committed: Dec 7-31 = 25 days x $6.13 = $153.25 (the month's
    # seat charge, no trend, no spread). Total $190.03.
    forecast = forecast_for_workspace(workspace=account.workspace)
    assert forecast.month_to_date == Decimal("36.78")
    assert forecast.projected_total == Decimal("190.03")
    assert forecast.high == Decimal("190.03")
    assert forecast.daily_projection[-1] == (date(2026, 12, 31), Decimal("6.13"))


@time_machine.travel(DEC_6, tick=False)
def test_it_splits_per_target_the_same_way():
    copilot = AccountFactory(provider=provider("copilot"))
    other = AccountFactory(workspace=copilot.workspace)
    manual_entry_create(account=copilot, day=date(2026, 12, 2), cost=Decimal("50"))
    usage(other, date(2026, 12, 2), "7")
    usage(copilot, date(2026, 12, 3), "1", model="gpt-4o")

    split = spend_split(workspace=copilot.workspace, start=date(2026, 12, 1), end=date(2027, 1, 1))
    # Dec 2: $50 fixed + $7 usage; Dec 3: $1 usage.
    assert split.fixed == {date(2026, 12, 2): Decimal("50")}
    assert split.usage == {date(2026, 12, 2): Decimal("7"), date(2026, 12, 3): Decimal("1")}
    only = spend_split(
        workspace=copilot.workspace,
        start=date(2026, 12, 1),
        end=date(2027, 1, 1),
        account_id=other.pk,
    )
    assert only.fixed == {}
    assert only.usage == {date(2026, 12, 2): Decimal("7")}

    budget = services.budget_create(
        workspace=copilot.workspace,
        scope=Budget.Scope.ACCOUNT,
        account=copilot,
        amount=Decimal("1000"),
    )
    target = selectors.budget_targets(workspace=copilot.workspace)[0]
    assert target.budget == budget
    forecast = selectors.target_forecast(
        workspace=copilot.workspace, target=target, today=date(2026, 12, 6)
    )
    # Copilot account: $50 fixed; usage $0, $0, $1, $0, $0 on Dec 1-5 -> mean $0.20/day, 26 days
    # -> $5.20; month to date $51 -> $56.20.
    assert forecast.month_to_date == Decimal("51")
    assert forecast.projected_total == Decimal("56.2")


def test_it_does_not_read_a_seat_count_change_as_a_spend_spike():
    day0 = date(2026, 11, 1)
    account = AccountFactory(provider=provider("copilot"))
    # 14 days of 8 seats at $5.07/day, then 12 seats at $7.60: +50 %, above the 30 % the MAD
    # floor allows on a flat series (median $5.07 + 3 x 10 % x $5.07 = $6.591).
    seat_lines(account, day0, day0 + timedelta(days=14), seats=8, cost="5.07")
    seat_lines(account, day0 + timedelta(days=14), day0 + timedelta(days=15), seats=12, cost="7.60")
    # and a one-off $190 manual charge on the same day
    manual_entry_create(account=account, day=day0 + timedelta(days=14), cost=Decimal("190"))

    with time_machine.travel(datetime(2026, 11, 15, 12, 0, tzinfo=UTC), tick=False):
        created = services.alerts_evaluate_for_workspace(workspace=account.workspace)

    assert [a for a in created if a.kind == Alert.Kind.ANOMALY] == []
    data = selectors.account_model_days(
        workspace=account.workspace, start=day0, end=date(2026, 12, 1)
    )
    assert dict(data) == {}  # nothing but fixed charges: no usage series at all


def test_it_keeps_usage_on_a_day_with_a_fixed_charge_of_the_same_model():
    account = AccountFactory()
    day = date(2026, 11, 3)
    usage(account, day, "2.5", model="gpt-4o")
    manual_entry_create(account=account, day=day, cost=Decimal("100"), model="gpt-4o")

    data = selectors.account_model_days(
        workspace=account.workspace, start=day, end=day + timedelta(1)
    )

    # The roll-up holds $2.50 (estimated) + $100 (manual) for gpt-4o; usage is the $2.50.
    assert data[account.pk]["gpt-4o"][day].cost == Decimal("2.5")
    assert data[account.pk]["gpt-4o"][day].input_tokens == 1000


@time_machine.travel(DEC_6, tick=False)
def test_it_counts_the_demo_seat_charge_once():
    # The reported case: with the demo data the $190 Copilot seat entry of Dec 1 was read as
    # a day of spend and extrapolated ($1,711.95 forecast for $290.73 spent).
    from django.core.management import call_command

    from accounts.tests.factories import UserFactory
    from alerts.forecast import forecast_month_end

    user = UserFactory(username="demo")
    call_command("seed_demo", "--user", "demo", "--days", "90", stdout=io.StringIO())

    split = spend_split(
        workspace=user.personal_workspace, start=date(2026, 10, 2), end=date(2027, 1, 1)
    )
    # 10 seats x $19 = $190, booked once on Dec 1; earlier months' 8 seats ($152) likewise.
    assert split.fixed[date(2026, 12, 1)] == Decimal("190")
    assert split.fixed[date(2026, 11, 1)] == Decimal("152")
    forecast = forecast_for_workspace(workspace=user.personal_workspace, today=date(2026, 12, 6))
    usage_only = forecast_month_end(
        daily_spend={d: v for d, v in split.usage.items() if d >= date(2026, 12, 1)},
        history={d: v for d, v in split.usage.items() if d < date(2026, 12, 1)},
        today=date(2026, 12, 6),
    )
    # The forecast is the usage forecast plus $190, exactly; never the $190 extrapolated.
    assert forecast.projected_total == usage_only.projected_total + Decimal("190")
    assert forecast.month_to_date == usage_only.month_to_date + Decimal("190")
    assert forecast.high == usage_only.high + Decimal("190")
