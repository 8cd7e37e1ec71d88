"""manage.py setup_schedules and manage.py sync_usage."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from io import StringIO

import pytest
import time_machine
from django.core.management import call_command
from django.core.management.base import CommandError
from django_q.models import Schedule

from costtracker.management.commands.setup_schedules import SCHEDULES
from providers.models import SyncStatus
from providers.tests.factories import AccountFactory, provider
from usage.models import SyncRun
from usage.tests.test_sync import (
    ANTHROPIC_COSTS,
    ANTHROPIC_TOTAL,
    COPILOT_TOTAL,
    OPENAI_TOTAL,
    dump,
    fixture,
    make_account,
    point_settings_at,
    record_total,
    rollup_total,
    serve_anthropic,
    serve_copilot,
    serve_openai,
)

NOW = "2026-08-03 12:00:00+00:00"

pytestmark = pytest.mark.django_db


def run_command(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


# --- setup_schedules ---


def test_it_creates_exactly_one_sync_schedule(settings):
    settings.SYNC_INTERVAL_MINUTES = 60

    output = run_command("setup_schedules")

    (schedule,) = Schedule.objects.filter(func="usage.tasks.sync_all_accounts")
    assert schedule.name == "usage-sync-all"
    # One row per entry of SCHEDULES, whatever other features schedule.
    assert Schedule.objects.count() == len(SCHEDULES)
    assert schedule.func == "usage.tasks.sync_all_accounts"
    assert (schedule.schedule_type, schedule.minutes, schedule.repeats) == (
        Schedule.MINUTES,
        60,
        -1,
    )
    assert "Created schedule usage-sync-all" in output


def test_it_is_idempotent_and_follows_the_interval_setting(settings):
    settings.SYNC_INTERVAL_MINUTES = 60
    run_command("setup_schedules")
    first = Schedule.objects.get(name="usage-sync-all")

    assert "Unchanged schedule usage-sync-all" in run_command("setup_schedules")
    settings.SYNC_INTERVAL_MINUTES = 15
    assert "Updated schedule usage-sync-all" in run_command("setup_schedules")

    (schedule,) = Schedule.objects.filter(name="usage-sync-all")
    assert Schedule.objects.count() == len(SCHEDULES)
    assert schedule.pk == first.pk
    assert schedule.minutes == 15


def test_it_collapses_duplicate_schedules(settings):
    settings.SYNC_INTERVAL_MINUTES = 30
    for _ in range(2):
        Schedule.objects.create(
            name="usage-sync-all", func="usage.tasks.sync_all_accounts", minutes=5
        )

    run_command("setup_schedules")

    (schedule,) = Schedule.objects.filter(name="usage-sync-all")
    assert schedule.minutes == 30


def test_it_runs_every_schedule_every_few_seconds_for_tests_and_back(settings):
    settings.SCHEDULE_SECONDS = 5

    assert "usage-sync-all: usage.tasks.sync_all_accounts every 5 s" in run_command(
        "setup_schedules"
    )
    rows = Schedule.objects.values_list("schedule_type", "cron").distinct()
    assert list(rows) == [(Schedule.CRON, "* * * * * */5")]  # croniter: seconds last
    schedule = Schedule.objects.get(name="usage-sync-all")
    at = datetime(2026, 11, 15, 12, 0, 1, tzinfo=UTC)
    with time_machine.travel(at, tick=False):
        assert schedule.calculate_next_run(at) == datetime(2026, 11, 15, 12, 0, 5, tzinfo=UTC)

    settings.SCHEDULE_SECONDS = 0
    run_command("setup_schedules")
    rows = Schedule.objects.values_list("schedule_type", "cron").distinct()
    assert list(rows) == [(Schedule.MINUTES, None)]


def test_it_refuses_a_schedule_seconds_that_does_not_divide_a_minute(settings):
    settings.SCHEDULE_SECONDS = 7

    with pytest.raises(CommandError, match="SCHEDULE_SECONDS must divide 60"):
        run_command("setup_schedules")
    assert Schedule.objects.count() == 0


def test_it_rejects_a_zero_interval(settings):
    settings.SYNC_INTERVAL_MINUTES = 0

    with pytest.raises(CommandError, match="at least 1 minute"):
        run_command("setup_schedules")
    assert Schedule.objects.count() == 0


# --- sync_usage ---


@time_machine.travel(NOW, tick=False)
def test_sync_usage_stores_exactly_the_served_totals_and_a_rerun_changes_nothing(
    settings, httpserver
):
    point_settings_at(settings, httpserver)
    serve_openai(httpserver)
    serve_anthropic(httpserver)
    serve_copilot(httpserver)
    openai, anthropic, copilot = (make_account(s) for s in ("openai", "anthropic", "copilot"))
    AccountFactory(provider=provider("ollama"))  # per-request only: not synced

    output = run_command("sync_usage")

    assert f"account {openai.pk} ({openai.name}, OpenAI): succeeded" in output
    assert "fetched 7, created 7, updated 0" in output
    assert f"account {copilot.pk} ({copilot.name}, GitHub Copilot): succeeded" in output
    assert "fetched 31, created 31, updated 0" in output
    assert output.count("succeeded") == 3
    # Exact to the last digit (well within 1e-10 USD):
    assert record_total(openai) == OPENAI_TOTAL  # $15.531920
    assert record_total(anthropic) == ANTHROPIC_TOTAL  # $2.0555912
    assert record_total(copilot) == COPILOT_TOTAL  # $39.8870967738
    for account, total in ((openai, OPENAI_TOTAL), (anthropic, ANTHROPIC_TOTAL)):
        assert rollup_total(account) == total
    assert rollup_total(copilot) == COPILOT_TOTAL
    before = [dump(a) for a in (openai, anthropic, copilot)]

    again = run_command("sync_usage")

    assert again.count("succeeded") == 3
    assert again.count("created 0, updated 0") == 3
    assert [dump(a) for a in (openai, anthropic, copilot)] == before
    assert SyncRun.objects.filter(status=SyncRun.Status.SUCCEEDED).count() == 6


@time_machine.travel(NOW, tick=False)
def test_sync_usage_syncs_one_account_for_the_days_asked(settings, httpserver):
    point_settings_at(settings, httpserver)
    serve_openai(httpserver)
    account = make_account("openai")
    other = make_account("anthropic")

    output = run_command("sync_usage", "--account", str(account.pk), "--days", "2")

    run = SyncRun.objects.get(account=account)
    # 2 days ending today: 2026-08-02 and 2026-08-03
    assert (run.window_start, run.window_end) == (date(2026, 8, 2), date(2026, 8, 4))
    assert "2026-08-02..2026-08-04 (end excluded)" in output
    # Only 2026-08-03 of the fixtures is in the window: "web search tool call" $12.50 and
    # "evals | gpt-4o-mini, input" $3 -> $15.50 (08-01's $0.0196710 + $0.012249 left out)
    assert record_total(account) == Decimal("15.50")
    assert SyncRun.objects.filter(account=other).count() == 0


@time_machine.travel(NOW, tick=False)
def test_sync_usage_exits_non_zero_when_an_account_fails(settings, httpserver):
    point_settings_at(settings, httpserver)
    serve_openai(httpserver)
    httpserver.expect_request(ANTHROPIC_COSTS).respond_with_data(
        fixture("anthropic", "error_401.json"), status=401, content_type="application/json"
    )
    good, bad = make_account("openai"), make_account("anthropic")
    out = StringIO()

    with pytest.raises(CommandError, match="1 of 2 account") as excinfo:
        call_command("sync_usage", stdout=out, stderr=StringIO())

    assert excinfo.value.returncode == 1
    output = out.getvalue()
    assert f"account {good.pk} ({good.name}, OpenAI): succeeded" in output
    assert f"account {bad.pk} ({bad.name}, Anthropic): failed" in output
    assert "key rejected (401): invalid x-api-key" in output
    bad.refresh_from_db()
    assert (bad.last_sync_status, bad.needs_attention) == (SyncStatus.FAILED, True)
    assert record_total(good) == OPENAI_TOTAL  # the failure did not stop the other account


def test_sync_usage_rejects_an_unknown_account():
    with pytest.raises(CommandError, match="No provider account with id 999999"):
        run_command("sync_usage", "--account", "999999")
    assert SyncRun.objects.count() == 0


def test_sync_usage_rejects_a_per_request_provider():
    account = AccountFactory(provider=provider("perplexity"))

    with pytest.raises(CommandError, match="has no official usage API"):
        run_command("sync_usage", "--account", str(account.pk))


def test_sync_usage_rejects_a_bad_day_count():
    with pytest.raises(CommandError, match="--days"):
        run_command("sync_usage", "--days", "0")
