"""Every change in spend leads to an alert evaluation within the stated bound: coalesced, never
dropped, across processes (EvaluationDue rows taken by alerts.tasks.evaluate_due)."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from unittest.mock import patch

import pytest
import time_machine
from django.contrib.admin.sites import site
from django.core.management import call_command
from django.db import transaction
from django_q.brokers import get_broker
from django_q.conf import Conf
from django_q.models import Schedule
from django_q.scheduler import scheduler

from accounts.tests.factories import UserFactory
from alerts import services, tasks
from alerts.models import Alert, EvaluationDue
from alerts.tests.factories import BudgetFactory
from providers.adapters.base import UsageLine
from providers.services import account_delete
from providers.tests.factories import AccountFactory, provider
from usage.extraction import RequestUsage
from usage.models import Price, UsageRecord
from usage.services.prices import EPOCH
from usage.services.reconciliation import invoice_set, true_up_book
from usage.services.records import (
    manual_entry_create,
    usage_lines_replace_window,
    usage_record_delete,
)
from usage.services.requests import RequestEvent, request_events_record

pytestmark = pytest.mark.django_db

NOON = datetime(2026, 11, 15, 12, 0, tzinfo=UTC)
# The bound the README states: an alert is evaluated within 60 s of any change in spend. The
# row is due at most window (10 s) + margin (3 s) after the write; the cluster's scheduler looks
# every 30 s and a worker polls every 1 s: 44 s, leaving 16 s for the evaluation itself.
DUE_WITHIN = timedelta(seconds=13)


def at(seconds: int) -> datetime:
    return NOON + timedelta(seconds=seconds)


def thresholds(workspace) -> list[int]:
    return sorted(
        Alert.objects.filter(workspace=workspace, kind=Alert.Kind.THRESHOLD).values_list(
            "threshold", flat=True
        )
    )


def entry(account, cost: str) -> UsageRecord:
    return manual_entry_create(account=account, day=date(2026, 11, 10), cost=Decimal(cost))


@pytest.fixture
def account():
    account = AccountFactory()
    BudgetFactory(workspace=account.workspace, amount=Decimal("200"))
    return account


@time_machine.travel(NOON, tick=False)
def test_it_evaluates_a_manual_entry_past_100_percent(account, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        entry(account, "250")  # $250 of $200 = 125 %

    due = EvaluationDue.objects.get(workspace=account.workspace)
    # 12:00:00 + 3 s margin falls in the window ending 12:00:10.
    assert due.due_at == at(10)
    assert due.due_at - NOON <= DUE_WITHIN
    # The ONCE schedule that runs the evaluation at the window's end.
    schedule = Schedule.objects.get(func="alerts.tasks.evaluate_due")
    assert (schedule.schedule_type, schedule.next_run, schedule.repeats) == (
        Schedule.ONCE,
        at(10),
        -1,
    )

    with time_machine.travel(at(9), tick=False):
        assert tasks.evaluate_due() == 0  # not due yet: later writes may still join
    assert thresholds(account.workspace) == []
    with time_machine.travel(at(10), tick=False):
        assert tasks.evaluate_due() == 1
    assert thresholds(account.workspace) == [80, 100]
    assert not EvaluationDue.objects.exists()


@time_machine.travel(NOON, tick=False)
def test_it_is_run_by_the_django_q2_scheduler(account, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        entry(account, "250")  # 125 %

    with patch.object(Conf, "SYNC", True):  # the scheduler's task runs inline
        with time_machine.travel(at(9), tick=False):
            scheduler(broker=get_broker())
        assert thresholds(account.workspace) == []  # the schedule is not due before 12:00:10
        # The cluster's scheduler looks every 30 s: at the latest 30 s after the window's end.
        with time_machine.travel(at(10 + 30), tick=False):
            scheduler(broker=get_broker())

    assert thresholds(account.workspace) == [80, 100]
    assert not EvaluationDue.objects.exists()
    assert not Schedule.objects.filter(func="alerts.tasks.evaluate_due").exists()  # ONCE: gone


@time_machine.travel(NOON, tick=False)
def test_it_coalesces_writes_of_one_window_into_one_evaluation(
    account, django_capture_on_commit_callbacks, monkeypatch
):
    calls = []
    evaluate = services.alerts_evaluate_for_workspace
    monkeypatch.setattr(
        services,
        "alerts_evaluate_for_workspace",
        lambda *, workspace, now=None: (
            calls.append(workspace.pk) or evaluate(workspace=workspace, now=now)
        ),
    )
    with django_capture_on_commit_callbacks(execute=True):
        entry(account, "100")
    with time_machine.travel(at(5), tick=False), django_capture_on_commit_callbacks(execute=True):
        entry(account, "70")  # $170 of $200 = 85 %
        other = AccountFactory(workspace=account.workspace)
        entry(other, "1")  # another account of the same workspace: the same evaluation

    assert EvaluationDue.objects.count() == 1
    assert Schedule.objects.filter(func="alerts.tasks.evaluate_due").count() == 1
    with time_machine.travel(at(10), tick=False):
        assert tasks.evaluate_due() == 1
        assert tasks.evaluate_due() == 0  # a second run (another node) finds nothing
    assert calls == [account.workspace_id]
    # $100 + $70 + $1 = $171 of $200 = 85.5 %.
    assert thresholds(account.workspace) == [80]


@time_machine.travel(NOON, tick=False)
def test_it_does_not_drop_a_write_made_during_an_evaluation(
    account, django_capture_on_commit_callbacks, monkeypatch
):
    with django_capture_on_commit_callbacks(execute=True):
        entry(account, "170")  # 85 %
    evaluate = services.alerts_evaluate_for_workspace
    writes = []

    def evaluate_while_spend_changes(*, workspace, now=None):
        # The evaluation has taken its row; a write lands while it reads.
        if not writes:
            with django_capture_on_commit_callbacks(execute=True):
                writes.append(entry(account, "40"))  # now $210 = 105 %
        return evaluate(workspace=workspace, now=now)

    monkeypatch.setattr(services, "alerts_evaluate_for_workspace", evaluate_while_spend_changes)
    with time_machine.travel(at(10), tick=False):
        assert tasks.evaluate_due() == 1

    # The write at 12:00:10 asked for the next window's evaluation: due 12:00:20.
    assert list(EvaluationDue.objects.values_list("due_at", flat=True)) == [at(20)]
    with time_machine.travel(at(20), tick=False):
        assert tasks.evaluate_due() == 1
    assert thresholds(account.workspace) == [80, 100]


@time_machine.travel(NOON, tick=False)
def test_it_asks_nothing_for_a_write_that_rolled_back(account, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        with pytest.raises(RuntimeError), transaction.atomic():
            entry(account, "250")
            raise RuntimeError("the write fails after the roll-up")

    assert not EvaluationDue.objects.exists()
    assert not UsageRecord.objects.exists()


@time_machine.travel(NOON, tick=False)
def test_it_skips_the_database_when_the_window_is_already_asked_for(
    account, django_assert_num_queries
):
    # The first ask of a window writes the row and its schedule...
    assert services.alerts_evaluation_request(account_id=account.pk) is True
    # ...later ones in the same process and window are a dictionary lookup.
    with django_assert_num_queries(0):
        assert services.alerts_evaluation_request(account_id=account.pk) is False
    # Another process (forgetting what this one knows) finds the row and writes nothing.
    services.evaluation_requests_forget()
    assert services.alerts_evaluation_request(account_id=account.pk) is False
    assert EvaluationDue.objects.count() == 1
    assert Schedule.objects.filter(func="alerts.tasks.evaluate_due").count() == 1
    # 7 s later the write belongs to the next window (12:00:07 + 3 s = 12:00:10).
    with time_machine.travel(at(7), tick=False):
        assert services.alerts_evaluation_request(account_id=account.pk) is True
    assert sorted(EvaluationDue.objects.values_list("due_at", flat=True)) == [at(10), at(20)]


def _proxy(account):
    request_events_record(
        account=account,
        events=[RequestEvent(request_id="r1", usage=RequestUsage(model="m", input_tokens=10))],
    )


def _sync(account):
    line = UsageLine(day=date(2026, 11, 14), model="m", line_item="m", cost=Decimal("3"))
    usage_lines_replace_window(
        account=account, start=date(2026, 11, 14), end=date(2026, 11, 16), lines=[line]
    )


def _manual_api(account, api_client=None, client=None):
    api_client.force_authenticate(account.workspace.personal_for)
    response = api_client.post(
        "/api/usage/records",
        {"account": account.pk, "date": "2026-11-10", "description": "seats", "cost": "5"},
        format="json",
    )
    assert response.status_code == 201, response.content


def _manual_page(account, api_client=None, client=None):
    client.force_login(account.workspace.personal_for)
    response = client.post(
        "/usage/new/",
        {"account": account.pk, "date": "2026-11-10", "description": "seats", "cost": "5"},
    )
    assert response.status_code == 302


def _delete(account, record):
    usage_record_delete(record=record)


def _admin_delete(account, record, client=None):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    response = client.post(
        f"/admin/usage/usagerecord/{record.pk}/delete/", {"post": "yes"}, follow=False
    )
    assert response.status_code == 302
    assert not UsageRecord.objects.filter(pk=record.pk).exists()


def _admin_edit(account, record, client=None):
    # What the admin's change form does once the form is valid.
    record.cost = Decimal("9")
    site._registry[UsageRecord].save_model(request=None, obj=record, form=None, change=True)


def _true_up(account, record):
    invoice_set(account=account, month_start=date(2026, 11, 1), amount=Decimal("20"))
    true_up_book(account=account, month_start=date(2026, 11, 1), today=date(2026, 11, 15))


def _account_delete(account, record):
    account_delete(account=account)


def _reprice(account):
    Price.objects.create(
        provider=account.provider,
        model="m",
        valid_from=EPOCH,
        input_per_token=Decimal("0.001"),
        output_per_token=Decimal("0.001"),
    )
    call_command("reprice", since="2026-11-01")


WRITES_WITHOUT_RECORD = {
    "proxy or ingestion": _proxy,
    "official sync": _sync,
    "manual entry (API)": _manual_api,
    "manual entry (page)": _manual_page,
}
WRITES_ON_A_RECORD = {
    "deletion": _delete,
    "admin deletion": _admin_delete,
    "admin edit": _admin_edit,
    "reconciliation true-up": _true_up,
    "account deletion": _account_delete,
}


@time_machine.travel(NOON, tick=False)
@pytest.mark.parametrize("path", [*WRITES_WITHOUT_RECORD, *WRITES_ON_A_RECORD, "reprice"])
def test_every_path_that_changes_spend_asks_for_an_evaluation(
    path, api_client, client, django_capture_on_commit_callbacks
):
    account = AccountFactory(provider=provider("groq"))
    owner = account.workspace.personal_for
    record = None
    if path in WRITES_ON_A_RECORD:
        record = entry(account, "5")  # outside capture: its own request is not run
    if path == "reprice":
        _proxy(account)  # unpriced when recorded
    assert not EvaluationDue.objects.exists()

    with django_capture_on_commit_callbacks(execute=True):
        if path in WRITES_WITHOUT_RECORD:
            fn = WRITES_WITHOUT_RECORD[path]
            kwargs = {"api_client": api_client, "client": client} if "manual" in path else {}
            fn(account, **kwargs)
        elif path == "reprice":
            _reprice(account)
        else:
            fn = WRITES_ON_A_RECORD[path]
            fn(account, record, **({"client": client} if "admin" in path else {}))

    due = EvaluationDue.objects.get(workspace=owner.personal_workspace)
    assert NOON < due.due_at <= NOON + DUE_WITHIN
    with time_machine.travel(due.due_at, tick=False):
        assert services.alerts_evaluate_due() == [owner.personal_workspace.pk]


def test_it_sets_up_the_safety_net_schedule():
    call_command("setup_schedules", stdout=io.StringIO())
    schedule = Schedule.objects.get(name="alerts-evaluate-due")
    assert (schedule.func, schedule.schedule_type, schedule.minutes) == (
        "alerts.tasks.evaluate_due",
        Schedule.MINUTES,
        1,
    )


@time_machine.travel(NOON, tick=False)
def test_it_keeps_a_failed_evaluation_for_the_next_run_and_evaluates_the_others(monkeypatch):
    first, second = AccountFactory(), AccountFactory()
    for a in (first, second):
        services.alerts_evaluation_request(account_id=a.pk)
    evaluate = services.alerts_evaluate_for_workspace

    def failing_for_first(*, workspace, now=None):
        if workspace.pk == first.workspace_id:
            raise RuntimeError("boom")
        return evaluate(workspace=workspace, now=now)

    monkeypatch.setattr(services, "alerts_evaluate_for_workspace", failing_for_first)
    with time_machine.travel(at(10), tick=False):
        assert services.alerts_evaluate_due() == [second.workspace_id]
    # The failed workspace's row stays: the next run (the schedule every minute) tries again.
    assert list(EvaluationDue.objects.values_list("workspace_id", flat=True)) == [
        first.workspace_id
    ]
    monkeypatch.setattr(services, "alerts_evaluate_for_workspace", evaluate)
    with time_machine.travel(at(60), tick=False):
        assert services.alerts_evaluate_due() == [first.workspace_id]
    assert not EvaluationDue.objects.exists()


@time_machine.travel(NOON, tick=False)
def test_it_never_fails_a_committed_write_over_the_request(
    account, django_capture_on_commit_callbacks, monkeypatch, caplog
):
    def broken(**kwargs):
        raise RuntimeError("database gone")

    monkeypatch.setattr(services, "alerts_evaluation_request", broken)
    with django_capture_on_commit_callbacks(execute=True):
        record = entry(account, "5")

    assert UsageRecord.objects.filter(pk=record.pk).exists()
    assert "database gone" in caplog.text  # logged; the 15-minute evaluation still runs


@time_machine.travel(NOON, tick=False)
def test_it_piles_up_no_schedules_while_the_cluster_is_stopped(account):
    # A run that was due 5 minutes ago and never ran: no scheduler is running.
    Schedule.objects.create(
        name="alerts-evaluate-due stale",
        func="alerts.tasks.evaluate_due",
        schedule_type=Schedule.ONCE,
        repeats=-1,
        next_run=NOON - timedelta(minutes=5),
    )
    for second in (0, 10, 20):
        with time_machine.travel(at(second), tick=False):
            assert services.alerts_evaluation_request(account_id=account.pk) is True

    assert EvaluationDue.objects.count() == 3
    assert Schedule.objects.filter(func="alerts.tasks.evaluate_due").count() == 1
    # When the cluster is back, the overdue run takes every due row: one evaluation.
    with time_machine.travel(at(30), tick=False):
        assert services.alerts_evaluate_due() == [account.workspace_id]
    assert not EvaluationDue.objects.exists()
