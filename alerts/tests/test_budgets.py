from __future__ import annotations

import io
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.core.exceptions import ValidationError

from accounts.tests.factories import UserFactory
from alerts import selectors, services, tasks
from alerts.models import Alert, Budget
from alerts.tests.factories import BudgetFactory
from providers.adapters.base import UsageLine
from providers.tests.factories import AccountFactory, provider
from usage.extraction import RequestUsage
from usage.models import DailyUsage, Source
from usage.services.records import manual_entry_create, usage_lines_replace_window
from usage.services.requests import RequestEvent, request_events_record

pytestmark = pytest.mark.django_db

NOV_15 = datetime(2026, 11, 15, 12, 0, tzinfo=UTC)


def spend(account, day: date, amount: str, model: str = "", **tokens) -> None:
    manual_entry_create(account=account, day=day, cost=Decimal(amount), model=model, **tokens)


def estimated(account, day: date, amount: str, model: str = "gpt-4o", **tokens) -> None:
    """A roll-up row as the proxy or ingestion would leave it (anomalies skip manual entries)."""
    DailyUsage.objects.create(
        account=account,
        provider=account.provider,
        day=day,
        source=Source.ESTIMATED,
        model=model,
        cost=Decimal(amount),
        **tokens,
    )


def thresholds_fired(user) -> list[tuple[int, date]]:
    return list(
        Alert.objects.filter(workspace=user.personal_workspace, kind=Alert.Kind.THRESHOLD)
        .order_by("threshold")
        .values_list("threshold", "period")
    )


@time_machine.travel(NOV_15, tick=False)
def test_it_fires_a_threshold_once_per_period():
    account = AccountFactory()
    user = account.workspace.personal_for
    BudgetFactory(workspace=user.personal_workspace, amount=Decimal("100"))
    spend(account, date(2026, 11, 10), "85")

    first = services.alerts_evaluate_for_workspace(workspace=user.personal_workspace)
    second = services.alerts_evaluate_for_workspace(workspace=user.personal_workspace)

    assert [a.threshold for a in first] == [80]  # $85 of $100 = 85 %: 80 yes, 100 not yet
    assert second == []
    assert thresholds_fired(user) == [(80, date(2026, 11, 1))]
    alert = Alert.objects.get(workspace=user.personal_workspace)
    assert alert.message == (
        "All spend: $85.00 spent this month, 85.0% of the $100.00 budget (alert at 80%)."
    )
    assert Decimal(alert.data["spent"]) == Decimal("85")


@time_machine.travel(NOV_15, tick=False)
def test_it_fires_80_then_100_as_spend_grows():
    account = AccountFactory()
    user = account.workspace.personal_for
    BudgetFactory(workspace=user.personal_workspace, amount=Decimal("200"))

    spend(account, date(2026, 11, 2), "150")  # 150 / 200 = 75 %: nothing yet
    assert services.alerts_evaluate_for_workspace(workspace=user.personal_workspace) == []

    spend(account, date(2026, 11, 3), "10")  # 160 / 200 = 80 % exactly: the 80 % alert
    assert [
        a.threshold
        for a in services.alerts_evaluate_for_workspace(workspace=user.personal_workspace)
    ] == [80]

    spend(account, date(2026, 11, 4), "39.99")  # 199.99 / 200 = 99.995 %: still only 80
    assert services.alerts_evaluate_for_workspace(workspace=user.personal_workspace) == []

    spend(account, date(2026, 11, 5), "0.01")  # 200.00 / 200 = 100 %: the 100 % alert
    assert [
        a.threshold
        for a in services.alerts_evaluate_for_workspace(workspace=user.personal_workspace)
    ] == [100]

    assert thresholds_fired(user) == [(80, date(2026, 11, 1)), (100, date(2026, 11, 1))]


def test_it_resets_at_the_start_of_the_month_in_the_users_time_zone():
    user = UserFactory(time_zone="America/Los_Angeles")
    account = AccountFactory(workspace=user.personal_workspace)
    BudgetFactory(workspace=user.personal_workspace, amount=Decimal("100"))

    with time_machine.travel(datetime(2026, 11, 20, 18, 0, tzinfo=UTC), tick=False):
        spend(account, date(2026, 11, 20), "90")  # 90 % of November's $100
        assert [
            a.threshold
            for a in services.alerts_evaluate_for_workspace(workspace=user.personal_workspace)
        ] == [80]

    # 2026-12-01 05:00 UTC is 21:00 on 30 November in Los Angeles: still November, already
    # alerted. The $85 on the UTC day 1 December belongs to December's budget.
    spend(account, date(2026, 12, 1), "85")
    with time_machine.travel(datetime(2026, 12, 1, 5, 0, tzinfo=UTC), tick=False):
        assert selectors.budget_statuses(workspace=user.personal_workspace)[0].spent == Decimal(
            "90"
        )
        assert services.alerts_evaluate_for_workspace(workspace=user.personal_workspace) == []

    # 09:00 UTC is 01:00 on 1 December there: a new month, and $85 of $100 is 85 %.
    with time_machine.travel(datetime(2026, 12, 1, 9, 0, tzinfo=UTC), tick=False):
        assert [
            a.threshold
            for a in services.alerts_evaluate_for_workspace(workspace=user.personal_workspace)
        ] == [80]

    assert thresholds_fired(user) == [(80, date(2026, 11, 1)), (80, date(2026, 12, 1))]


@time_machine.travel(NOV_15, tick=False)
def test_it_counts_only_the_spend_in_the_budget_scope():
    openai = AccountFactory(provider=provider("openai"))
    user = openai.workspace.personal_for
    anthropic = AccountFactory(workspace=user.personal_workspace, provider=provider("anthropic"))
    BudgetFactory(
        workspace=user.personal_workspace,
        scope=Budget.Scope.PROVIDER,
        provider=provider("anthropic"),
        amount=100,
    )
    BudgetFactory(
        workspace=user.personal_workspace, scope=Budget.Scope.ACCOUNT, account=openai, amount=100
    )
    spend(openai, date(2026, 11, 3), "30")
    spend(anthropic, date(2026, 11, 3), "81")

    created = services.alerts_evaluate_for_workspace(workspace=user.personal_workspace)

    # Anthropic: $81 of $100 = 81 % -> 80 fires; the OpenAI account: $30 = 30 % -> nothing.
    assert [(a.budget.scope, a.threshold) for a in created] == [("provider", 80)]
    statuses = {
        s.target.scope: s for s in selectors.budget_statuses(workspace=user.personal_workspace)
    }
    assert statuses["provider"].spent == Decimal("81")
    assert statuses["provider"].status == "warning"
    assert statuses["account"].spent == Decimal("30")
    assert statuses["account"].status == "ok"


@time_machine.travel(NOV_15, tick=False)
def test_it_lets_official_figures_supersede_estimates():
    account = AccountFactory(provider=provider("perplexity"))
    user = account.workspace.personal_for
    BudgetFactory(workspace=user.personal_workspace, amount=Decimal("100"))
    day = date(2026, 11, 3)
    estimated = RequestEvent(
        request_id="e1",
        occurred_at=datetime(2026, 11, 3, 9, tzinfo=UTC),
        usage=RequestUsage(model="sonar", provider_cost=Decimal("70"), found=True),
    )
    # Perplexity's own cost figure prices the estimate without a price book.
    request_events_record(account=account, events=[estimated])
    line = UsageLine(day=day, model="sonar", line_item="invoice", cost=Decimal("60"))
    usage_lines_replace_window(account=account, start=day, end=date(2026, 11, 4), lines=[line])

    # The official $60 replaces the estimated $70 for that day: 60 %, no alert (130 % if added).
    assert selectors.budget_statuses(workspace=user.personal_workspace)[0].spent == Decimal("60")
    assert services.alerts_evaluate_for_workspace(workspace=user.personal_workspace) == []


@time_machine.travel(NOV_15, tick=False)
def test_it_treats_an_accounts_monthly_budget_as_an_account_budget():
    account = AccountFactory(monthly_budget=Decimal("50"))
    spend(account, date(2026, 11, 1), "50")

    created = services.alerts_evaluate_for_workspace(workspace=account.workspace)

    # $50 of $50 = 100 %: both default thresholds (and the forecast); no Budget row involved.
    fired = sorted(a.threshold for a in created if a.kind == Alert.Kind.THRESHOLD)
    assert fired == [80, 100]
    assert {(a.account_id, a.budget_id) for a in created} == {(account.pk, None)}
    assert not Budget.objects.exists()
    assert created[0].message.startswith(f"Account {account.name} (set on the account): $50.00")


@time_machine.travel(datetime(2025, 6, 11, 12, 0, tzinfo=UTC), tick=False)
def test_it_warns_when_the_forecast_exceeds_the_budget():
    account = AccountFactory()
    user = account.workspace.personal_for
    for day in range(1, 11):
        estimated(account, date(2025, 6, day), "10")  # usage, not a fixed charge

    budget = services.budget_create(
        workspace=user.personal_workspace,
        scope=Budget.Scope.OVERALL,
        amount=Decimal("250"),
        forecast_alert=True,
    )

    # $100 over 10 complete days = $10/day, flat; 20 days left (11..30 June) at $10 -> $300.
    # $300 - $250 = $50 over. Running total passes $250 when 100 + 10n > 250, n = 16: the
    # 16th projected day is 26 June. $100 of $250 = 40 %: no threshold alert.
    alert = Alert.objects.get(workspace=user.personal_workspace)
    assert alert.kind == Alert.Kind.FORECAST
    assert alert.budget == budget
    assert alert.message == (
        "All spend: On track to exceed the budget by $50.00 around day 26 (Jun 26)."
    )
    assert Decimal(alert.data["projected_total"]) == Decimal("300")
    assert (
        services.alerts_evaluate_for_workspace(workspace=user.personal_workspace) == []
    )  # once per period


@time_machine.travel(datetime(2025, 6, 11, 12, 0, tzinfo=UTC), tick=False)
def test_it_stays_quiet_when_the_forecast_is_within_the_budget():
    account = AccountFactory()
    for day in range(1, 11):
        estimated(account, date(2025, 6, day), "10")  # usage, not a fixed charge

    # Projected $300 (as above) against $300: not over.
    services.budget_create(
        workspace=account.workspace,
        scope=Budget.Scope.OVERALL,
        amount=Decimal("300"),
        forecast_alert=True,
    )

    assert not Alert.objects.exists()


@time_machine.travel(NOV_15, tick=False)
def test_it_raises_a_spike_anomaly_from_a_synthetic_series():
    account = AccountFactory()
    user = account.workspace.personal_for
    start = date(2026, 11, 1)
    for i in range(14):  # 1..14 November: $1.00 a day
        estimated(account, start + timedelta(days=i), "1.00")
    estimated(account, date(2026, 11, 15), "5.00")

    first = services.alerts_evaluate_for_workspace(workspace=user.personal_workspace)
    second = services.alerts_evaluate_for_workspace(workspace=user.personal_workspace)

    # Median $1.00, MAD 0 so the spread is floored at 10 % of the median, $0.10:
    # threshold 1.00 + 3 x 0.10 = $1.30; $5.00 is above it.
    assert len(first) == 1 and second == []
    alert = first[0]
    assert alert.kind == Alert.Kind.ANOMALY
    assert alert.account == account
    assert alert.data["detector"] == "spike"
    assert alert.data["model"] == "gpt-4o"
    assert alert.data["day"] == "2026-11-15"
    assert Decimal(alert.data["observed"]) == Decimal("5")
    assert Decimal(alert.data["baseline"]) == Decimal("1")
    assert Decimal(alert.data["threshold"]) == Decimal("1.3")
    assert alert.message.startswith(f"{account.name}, gpt-4o: Spend on 2026-11-15 was $5.00")


@time_machine.travel(NOV_15, tick=False)
def test_it_uses_the_anomaly_k_setting(settings):
    settings.ANOMALY_K = 50  # threshold 1.00 + 50 x 0.10 = $6.00: $5.00 is no longer a spike
    account = AccountFactory()
    for i in range(14):
        estimated(account, date(2026, 11, 1) + timedelta(days=i), "1.00")
    estimated(account, date(2026, 11, 15), "5.00")

    assert services.alerts_evaluate_for_workspace(workspace=account.workspace) == []


@time_machine.travel(NOV_15, tick=False)
def test_it_raises_a_cache_collapse_anomaly():
    account = AccountFactory()
    start = date(2026, 11, 1)
    day_of = {start + timedelta(days=i): (8000, 2000) for i in range(14)}  # 80 % cached
    day_of[date(2026, 11, 15)] = (1000, 9000)  # 10 % cached
    for day, (cached, uncached) in day_of.items():
        estimated(
            account,
            day,
            "1.00",
            model="claude-sonnet-4",
            cache_read_tokens=cached,
            input_tokens=uncached,
        )

    created = services.alerts_evaluate_for_workspace(workspace=account.workspace)

    # Baseline 80 %, no spread; threshold min(80 % - 0, 80 % - 20 points) = 60 %; 10 % < 60 %.
    assert [a.data["detector"] for a in created] == ["cache_collapse"]
    assert Decimal(created[0].data["observed"]) == Decimal("0.1")
    assert Decimal(created[0].data["threshold"]) == Decimal("0.6")


@time_machine.travel(NOV_15, tick=False)
def test_it_does_not_read_a_manual_entry_as_a_spike():
    account = AccountFactory()
    for i in range(14):
        estimated(account, date(2026, 11, 1) + timedelta(days=i), "1.00", model="")
    spend(account, date(2026, 11, 15), "40.00")  # a hand-entered invoice

    assert services.alerts_evaluate_for_workspace(workspace=account.workspace) == []


@time_machine.travel(NOV_15, tick=False)
def test_it_ignores_old_spikes_in_backfilled_history():
    account = AccountFactory()
    for i in range(20):  # 20 Oct .. 8 Nov, a spike on 5 Nov then back to normal
        day = date(2026, 10, 20) + timedelta(days=i)
        estimated(account, day, "9.00" if day == date(2026, 11, 5) else "1.00")

    assert services.alerts_evaluate_for_workspace(workspace=account.workspace) == []


@time_machine.travel(NOV_15, tick=False)
def test_it_evaluates_the_owner_after_a_sync_of_one_account():
    account = AccountFactory()
    BudgetFactory(workspace=account.workspace, amount=Decimal("10"))
    spend(account, date(2026, 11, 2), "12")

    created = services.alerts_evaluate_for_account(account_id=account.pk)

    assert sorted(a.threshold for a in created) == [80, 100]  # $12 of $10 = 120 %
    assert services.alerts_evaluate_for_account(account_id=999999) == []


def test_it_rejects_a_budget_whose_scope_and_target_disagree():
    account = AccountFactory()
    user = account.workspace.personal_for
    stranger = AccountFactory()

    with pytest.raises(ValidationError) as missing:
        services.budget_create(
            workspace=user.personal_workspace, scope=Budget.Scope.ACCOUNT, amount=Decimal("5")
        )
    with pytest.raises(ValidationError) as mixed:
        services.budget_create(
            workspace=user.personal_workspace,
            scope=Budget.Scope.OVERALL,
            amount=Decimal("5"),
            account=account,
        )
    with pytest.raises(ValidationError) as foreign:
        services.budget_create(
            workspace=user.personal_workspace,
            scope=Budget.Scope.ACCOUNT,
            amount=Decimal("5"),
            account=stranger,
        )
    with pytest.raises(ValidationError) as thresholds:
        services.budget_create(
            workspace=user.personal_workspace,
            scope=Budget.Scope.OVERALL,
            amount=Decimal("5"),
            thresholds=[0, 80],
        )

    assert "account" in missing.value.message_dict
    assert "account" in mixed.value.message_dict
    assert "account" in foreign.value.message_dict
    assert "thresholds" in thresholds.value.message_dict
    assert not Budget.objects.exists()


def test_it_cleans_thresholds():
    assert services.thresholds_clean([100, 80, 80]) == [80, 100]
    for bad in ([], [0], [1001], ["80"], [True], "80, 100", [80.5]):
        with pytest.raises(ValidationError):
            services.thresholds_clean(bad)


@time_machine.travel(NOV_15, tick=False)
def test_it_evaluates_every_user_on_schedule():
    over, under = AccountFactory(), AccountFactory()
    BudgetFactory(workspace=over.workspace, amount=Decimal("10"))
    BudgetFactory(workspace=under.workspace, amount=Decimal("10"))
    spend(over, date(2026, 11, 2), "9")  # 90 %: the 80 % alert
    spend(under, date(2026, 11, 2), "1")  # 10 %: nothing

    assert tasks.evaluate_all() == 1
    assert tasks.evaluate_all() == 0
    assert Alert.objects.get().workspace == over.workspace


def test_it_is_scheduled_every_15_minutes():
    from django.core.management import call_command
    from django_q.models import Schedule

    call_command("setup_schedules", stdout=io.StringIO())

    schedule = Schedule.objects.get(name="alerts-evaluate-all")
    assert (schedule.func, schedule.minutes) == ("alerts.tasks.evaluate_all", 15)
