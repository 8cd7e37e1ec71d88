"""Raw history (issue 14 point 2): on PostgreSQL per-request records are partitioned by UTC
month; RAW_RETENTION_DAYS removes whole months of them (dropping partitions there, deleting
rows on SQLite) while the roll-ups, official and manual rows stay.

Prices: gpt-4o at $2.50 per million input tokens and $10 per million output tokens, so an
event of 1,000 input and 100 output tokens costs 1000 × 0.0000025 + 100 × 0.00001 = $0.0035.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
import time_machine
from django.core.management import call_command
from django.db import connection
from django.test import override_settings
from django_q.models import Schedule

from costtracker.tests.migrating import back_to_latest, migrate_to, migrate_to_latest  # noqa: F401
from providers.adapters.base import UsageLine
from providers.services import account_delete
from providers.tests.factories import AccountFactory, provider
from usage.extraction import RequestUsage
from usage.models import DailyUsage, Price, RawHistoryPrune, RequestKey, Source, UsageRecord
from usage.selectors import raw_history_start, spend_total
from usage.services import history
from usage.services.prices import EPOCH
from usage.services.records import manual_entry_write, usage_lines_replace_window
from usage.services.requests import RequestEvent, request_events_record

pytestmark = pytest.mark.django_db

D = Decimal
PER_M = D("0.000001")
EVENT_COST = D("0.0035")  # 1000 × 0.0000025 + 100 × 0.00001
postgresql_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="partitions are PostgreSQL's"
)


@pytest.fixture
def account():
    Price.objects.create(
        provider=provider("openai"),
        model="gpt-4o",
        valid_from=EPOCH,
        input_per_token=D("2.50") * PER_M,
        output_per_token=D("10") * PER_M,
    )
    return AccountFactory(provider=provider("openai"))


def send(account, request_id: str, at: datetime | None) -> str:
    usage = RequestUsage(model="gpt-4o", input_tokens=1000, output_tokens=100, request_count=1)
    event = RequestEvent(request_id=request_id, usage=usage, occurred_at=at)
    reasons: dict[str, str] = {}
    status = request_events_record(account=account, events=[event], reasons=reasons)
    return reasons.get(request_id, status[request_id])


def partition_of(record_pk: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT tableoid::regclass::text FROM {UsageRecord._meta.db_table} WHERE id = %s",
            [record_pk],
        )
        return cursor.fetchone()[0]


def at(year: int, month: int, day: int = 10) -> datetime:
    return datetime(year, month, day, 12, tzinfo=UTC)


@postgresql_only
def test_it_files_each_request_under_its_month_and_synced_and_manual_rows_apart(account):
    with time_machine.travel("2026-12-06 12:00Z", tick=False):
        assert send(account, "a", at(2026, 12)) == "created"
        assert send(account, "b", at(2026, 3)) == "created"  # March has no table yet
        usage_lines_replace_window(
            account=account,
            start=date(2026, 12, 1),
            end=date(2026, 12, 2),
            lines=[
                UsageLine(day=date(2026, 12, 1), model="gpt-4o", line_item="gpt-4o", cost=D("1"))
            ],
        )
        manual = manual_entry_write(account=account, day=date(2026, 12, 2), cost=D("2"))
    record = {r.request_id: r.pk for r in UsageRecord.objects.filter(source=Source.ESTIMATED)}
    official = UsageRecord.objects.get(source=Source.OFFICIAL)
    assert partition_of(record["a"]) == "usage_usagerecord_y2026m12"
    # Recording never makes a table (it would wait for locks): March's request waits in the
    # default partition until the daily task gives it its month.
    assert partition_of(record["b"]) == "usage_usagerecord_estimated_default"
    with time_machine.travel("2026-12-06 12:00Z", tick=False):
        assert "usage_usagerecord_y2026m03" in history.partitions_create_ahead()
    assert partition_of(record["b"]) == "usage_usagerecord_y2026m03"
    assert partition_of(official.pk) == "usage_usagerecord_settled"
    assert partition_of(manual.pk) == "usage_usagerecord_settled"
    assert date(2026, 3, 1) in history.partition_months()


@postgresql_only
def test_it_gives_a_row_of_a_month_without_a_table_its_month_later(account):
    # Any write (here the ORM, as the admin does) of a month with no table yet lands in the
    # default partition; the daily task moves it into its month.
    record = UsageRecord.objects.create(
        account=account,
        provider=account.provider,
        natural_key="req:x",
        request_id="x",
        bucket_start=at(2025, 5),
        granularity="event",
        source=Source.ESTIMATED,
        cost=EVENT_COST,
    )
    assert partition_of(record.pk) == "usage_usagerecord_estimated_default"
    with time_machine.travel("2026-12-06 12:00Z", tick=False):
        made = history.partitions_create_ahead()
        assert history.partitions_create_ahead() == []  # a second run has nothing to do
    assert "usage_usagerecord_y2025m05" in made
    # This month and the three after it (RAW_PARTITIONS_AHEAD) exist too.
    assert {date(2026, 12, 1), date(2027, 1, 1), date(2027, 2, 1), date(2027, 3, 1)} <= set(
        history.partition_months()
    )
    assert partition_of(record.pk) == "usage_usagerecord_y2025m05"
    assert UsageRecord.objects.get(pk=record.pk).cost == EVENT_COST


def test_it_counts_a_request_once_even_when_resent_in_another_month(account):
    # Sent without a time, the event takes the time it arrives: the second copy falls in the
    # next month (another partition on PostgreSQL), and is still a duplicate.
    with time_machine.travel("2026-11-30 23:59:59Z", tick=False):
        assert send(account, "once", None) == "created"
    with time_machine.travel("2026-12-01 00:00:01Z", tick=False):
        assert send(account, "once", None) == "duplicate"
    assert UsageRecord.objects.filter(request_id="once").count() == 1
    assert DailyUsage.objects.get(account=account).cost == EVENT_COST
    assert RequestKey.objects.filter(account=account).count() == 1


def _history(account) -> None:
    """Requests in Aug, Sep, Oct and Dec 2026, one official and one manual row in August,
    each month's requests in its own table on PostgreSQL."""
    with time_machine.travel("2026-12-06 12:00Z", tick=False):
        for month in (8, 9, 10, 12):
            assert send(account, f"r{month}", at(2026, month)) == "created"
        usage_lines_replace_window(
            account=account,
            start=date(2026, 8, 1),
            end=date(2026, 8, 2),
            lines=[
                UsageLine(day=date(2026, 8, 1), model="gpt-4o", line_item="gpt-4o", cost=D("1"))
            ],
        )
        manual_entry_write(account=account, day=date(2026, 8, 3), cost=D("2"))
        history.partitions_create_ahead()  # the daily task: each month its table (PostgreSQL)


@override_settings(RAW_RETENTION_DAYS=70)
def test_it_removes_whole_months_of_requests_and_keeps_every_total(account):
    _history(account)
    workspace = account.workspace
    year = (date(2026, 1, 1), date(2027, 1, 1))
    # 4 requests, one official $1 line, one manual $2 entry: 4 × 0.0035 + 1 + 2 = $3.014.
    assert spend_total(workspace=workspace, start=year[0], end=year[1]) == D("3.014")

    # 70 days before 6 Dec is 27 Sep: August (ended before it) goes, September stays whole.
    with time_machine.travel("2026-12-06 12:00Z", tick=False):
        result = history.raw_history_prune()
        again = history.raw_history_prune()

    assert result.before == datetime(2026, 9, 1, tzinfo=UTC)
    assert (result.keys, again.months, again.records, again.keys) == (1, 0, 0, 0)
    if connection.vendor == "postgresql":
        assert (result.months, result.records) == (1, 0)  # a DROP, not a DELETE of rows
        assert date(2026, 8, 1) not in history.partition_months()
        assert date(2026, 9, 1) in history.partition_months()
    else:
        assert (result.months, result.records) == (0, 1)
    left = UsageRecord.objects.order_by("bucket_start").values_list("source", "request_id")
    assert list(left) == [
        (Source.OFFICIAL, ""),
        (Source.MANUAL, ""),
        (Source.ESTIMATED, "r9"),
        (Source.ESTIMATED, "r10"),
        (Source.ESTIMATED, "r12"),
    ]
    assert sorted(RequestKey.objects.values_list("natural_key", flat=True)) == [
        "req:r10",
        "req:r12",
        "req:r9",
    ]
    # The roll-ups stay: the year's total is the same $3.014, August's request included.
    assert spend_total(workspace=workspace, start=year[0], end=year[1]) == D("3.014")
    assert raw_history_start() == datetime(2026, 9, 1, tzinfo=UTC)
    assert RawHistoryPrune.objects.count() == 1  # the run that removed nothing left no row


@override_settings(RAW_RETENTION_DAYS=70)
def test_it_refuses_an_event_from_before_the_raw_history_and_takes_one_after(account):
    _history(account)
    with time_machine.travel("2026-12-06 12:00Z", tick=False):
        history.raw_history_prune()
        # August's request again: its key is gone, so it would be counted a second time.
        refused = send(account, "r8", at(2026, 8))
        assert "before 2026-09-01" in refused and "RAW_RETENTION_DAYS" in refused
        assert send(account, "new-in-september", at(2026, 9, 2)) == "created"
        assert send(account, "r9", at(2026, 9)) == "duplicate"
    assert not UsageRecord.objects.filter(request_id="r8").exists()
    # August keeps its one request's $0.0035 in the roll-up, not two.
    august = DailyUsage.objects.get(account=account, day=date(2026, 8, 10))
    assert august.cost == EVENT_COST


def test_it_keeps_everything_when_retention_is_off(account):
    _history(account)
    with time_machine.travel("2027-12-06 12:00Z", tick=False):
        result = history.raw_history_prune()
    assert result == history.PruneResult(None, 0, 0, 0, 0.0)
    assert UsageRecord.objects.filter(source=Source.ESTIMATED).count() == 4
    assert raw_history_start() is None


def test_it_forgets_an_accounts_request_keys_with_the_account(account):
    with time_machine.travel("2026-12-06 12:00Z", tick=False):
        assert send(account, "k", None) == "created"
    other = AccountFactory(provider=provider("openai"))
    with time_machine.travel("2026-12-06 12:00Z", tick=False):
        assert send(other, "k", None) == "created"  # keys are per account
    account_delete(account=account)
    assert list(RequestKey.objects.values_list("account_id", flat=True)) == [other.pk]


def test_it_schedules_the_daily_history_task():
    call_command("setup_schedules", stdout=open(os.devnull, "w"))
    schedule = Schedule.objects.get(name="usage-history")
    assert (schedule.func, schedule.minutes) == ("usage.tasks.raw_history_maintain", 24 * 60)


def test_it_refuses_a_retention_shorter_than_the_minimum():
    env = {**os.environ, "RAW_RETENTION_DAYS": "10", "SECRET_KEY": "x", "ENCRYPTION_KEYS": "x"}
    code = "import django; django.setup()"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.returncode != 0
    assert "RAW_RETENTION_DAYS must be at least 35" in result.stderr


def _latest_but_usage(name: str) -> list[tuple[str, str]]:
    from django.db.migrations.loader import MigrationLoader

    leaves = MigrationLoader(connection).graph.leaf_nodes()
    return [(app, leaf) for app, leaf in leaves if app != "usage"] + [("usage", name)]


@postgresql_only
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.usefixtures("back_to_latest")
def test_it_moves_existing_records_into_partitions_and_back_with_nothing_lost():
    apps = migrate_to(_latest_but_usage("0010_attribution_by_dimension"))
    Account = apps.get_model("providers", "ProviderAccount")
    Provider = apps.get_model("providers", "Provider")
    Workspace = apps.get_model("accounts", "Workspace")
    Record = apps.get_model("usage", "UsageRecord")
    account = Account.objects.create(
        workspace=Workspace.objects.create(name="w"),
        provider=Provider.objects.get(slug="openai"),
        name="a",
    )
    common = {"account_id": account.pk, "provider_id": account.provider_id, "granularity": "event"}
    rows = [
        Record.objects.create(
            natural_key=f"req:{n}",
            request_id=str(n),
            bucket_start=at(2025, month),
            source="estimated",
            cost=D("0.000000000001"),
            **common,
        )  # fmt: skip
        for n, month in enumerate([1, 1, 7])
    ]
    rows.append(
        Record.objects.create(
            natural_key="day:x", bucket_start=at(2025, 7), source="official", cost=D(5), **common
        )
    )

    def snapshot(apps):
        model = apps.get_model("usage", "UsageRecord")
        return sorted(model.objects.values_list("pk", "natural_key", "source", "cost"))

    before = snapshot(apps)
    apps = migrate_to_latest()
    assert snapshot(apps) == before
    assert partition_of(rows[0].pk) == partition_of(rows[1].pk) == "usage_usagerecord_y2025m01"
    assert partition_of(rows[2].pk) == "usage_usagerecord_y2025m07"
    assert partition_of(rows[3].pk) == "usage_usagerecord_settled"
    # The requests' keys came along: resending one is a duplicate.
    Key = apps.get_model("usage", "RequestKey")
    assert sorted(Key.objects.values_list("natural_key", flat=True)) == ["req:0", "req:1", "req:2"]
    # Ids go on from where they were.
    Record = apps.get_model("usage", "UsageRecord")
    later = Record.objects.create(
        natural_key="req:9", request_id="9", bucket_start=at(2025, 7), source="estimated", **common
    )
    assert later.pk > max(r.pk for r in rows)

    apps = migrate_to(_latest_but_usage("0011_request_keys_raw_history"))
    assert snapshot(apps) == sorted([*before, (later.pk, "req:9", "estimated", None)])
    with connection.cursor() as cursor:
        cursor.execute("SELECT relkind FROM pg_class WHERE relname = 'usage_usagerecord'")
        assert cursor.fetchone()[0] == "r"  # a plain table again


@postgresql_only
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_it_makes_a_month_once_when_two_nodes_make_it_at_the_same_time(account):
    import threading

    barrier, made, errors = threading.Barrier(4), [], []

    def node() -> None:
        try:
            barrier.wait()
            made.extend(history.partitions_ensure(months=[date(2023, 4, 9)]))
        except Exception as exc:  # reported below: an assert in a thread fails nothing
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=node) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert made == ["usage_usagerecord_y2023m04"]  # one made it; the others found it made
    with time_machine.travel("2026-12-06 12:00Z", tick=False):
        assert send(account, "april", at(2023, 4)) == "created"
    assert partition_of(UsageRecord.objects.get(request_id="april").pk) == (
        "usage_usagerecord_y2023m04"
    )


@override_settings(RAW_RETENTION_DAYS=70)
def test_the_daily_task_makes_months_ahead_and_applies_the_retention(account):
    from usage.tasks import raw_history_maintain

    _history(account)
    with time_machine.travel("2026-12-06 12:00Z", tick=False):
        summary = raw_history_maintain()
        assert raw_history_maintain().startswith("0 partitions made, 0 dropped, 0 records")
    assert "records before 2026-09-01 removed" in summary
    assert not UsageRecord.objects.filter(request_id="r8").exists()
    if connection.vendor == "postgresql":
        assert date(2027, 3, 1) in history.partition_months()


@override_settings(RAW_RETENTION_DAYS=70)
def test_the_commands_apply_the_retention_now_and_say_what_reprice_cannot_reach(account):
    from io import StringIO

    _history(account)
    out = StringIO()
    with time_machine.travel("2026-12-06 12:00Z", tick=False):
        call_command("raw_history", stdout=out)
        assert "records before 2026-09-01 removed" in out.getvalue()
        out = StringIO()
        call_command("reprice", since="2026-08-01", stdout=out)
    assert "Re-priced 0 estimated record(s)." in out.getvalue()
    assert "before 2026-09-01 were removed" in out.getvalue()
    out = StringIO()
    call_command("reprice", since="2026-09-01", stdout=out)
    assert "were removed" not in out.getvalue()


def test_the_admin_lists_removals_and_lets_no_one_edit_them(admin_client):
    RawHistoryPrune.objects.create(before=datetime(2026, 9, 1, tzinfo=UTC), months=1)
    response = admin_client.get("/admin/usage/rawhistoryprune/")
    assert response.status_code == 200 and b"Sept. 1, 2026" in response.content
    assert admin_client.get("/admin/usage/rawhistoryprune/add/").status_code == 403


@postgresql_only
def test_it_makes_no_table_while_recording_and_none_for_a_backfill_of_long_ago(account):
    # One batch of 300 months back to 2001: recording makes nothing; the daily task gives
    # their tables only to the last MONTHS_BACK_WITH_OWN_TABLE (24) months, so a backfill of
    # long ago cannot leave hundreds of tables for every query by id to probe.
    usage = RequestUsage(model="gpt-4o", input_tokens=1000, output_tokens=100, request_count=1)
    events = [
        RequestEvent(request_id=f"b{n}", usage=usage, occurred_at=at(2001 + n // 12, n % 12 + 1))
        for n in range(300)  # January 2001 to December 2025
    ]
    before = set(history.partition_months())
    with time_machine.travel("2026-12-06 12:00Z", tick=False):
        assert set(request_events_record(account=account, events=events).values()) == {"created"}
        assert set(history.partition_months()) == before
        history.partitions_create_ahead()
    months = set(history.partition_months()) - before
    # December 2024 to December 2025 (13 months: 24 back from December 2026 is December 2024)
    # get their own, plus this month and the three ahead if they were not there yet.
    assert {m for m in months if m.year < 2026} == {date(2024, 12, 1)} | {
        date(2025, m, 1) for m in range(1, 13)
    }
    assert UsageRecord.objects.filter(bucket_start__year__lt=2024).count() == 276  # 23 years
    assert partition_of(UsageRecord.objects.get(request_id="b0").pk) == (
        "usage_usagerecord_estimated_default"
    )


@postgresql_only
def test_it_leaves_the_callers_lock_timeout_alone(account):
    from django.db import transaction

    with transaction.atomic():
        history.partitions_ensure(months=[date(2022, 2, 1)])
        with connection.cursor() as cursor:
            cursor.execute("SHOW lock_timeout")
            assert cursor.fetchone()[0] == "0"


@postgresql_only
@override_settings(RAW_RETENTION_DAYS=70)
def test_the_recording_statement_itself_refuses_what_is_before_the_raw_history(
    account, monkeypatch
):
    # The check that gives the reason runs after the statement on PostgreSQL; what keeps the
    # event out is the statement, which reads the raw history's start as it inserts.
    from usage.services import requests as recording

    _history(account)
    with time_machine.travel("2026-12-06 12:00Z", tick=False):
        history.raw_history_prune()
        monkeypatch.setattr(recording, "history_refusal", lambda times: None)
        assert send(account, "r8", at(2026, 8)) == "duplicate"  # not stored, whatever it says
    assert not UsageRecord.objects.filter(request_id="r8").exists()
    assert DailyUsage.objects.get(account=account, day=date(2026, 8, 10)).cost == EVENT_COST


def _hold(sql: str):
    """Another connection in an open transaction that ran `sql` (a long reader, a slow
    delete); roll it back with .rollback() and .close()."""
    from django.db import connections

    holder = connections.create_connection("default")
    holder.set_autocommit(False)
    with holder.cursor() as cursor:
        cursor.execute(sql)
    return holder


def _in_thread(out: dict, name: str, fn):
    import threading

    def run():
        try:
            out[name] = fn()
        except Exception as exc:  # the test asserts on it: an exception in a thread fails nothing
            out[name] = repr(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


@postgresql_only
@pytest.mark.django_db(transaction=True)
@override_settings(RAW_RETENTION_DAYS=70)
def test_a_resend_while_the_prune_deletes_keys_is_refused_and_counted_once(account):
    # The prune moves the raw history's start before it removes anything; a resend of a
    # pruned request that arrives while the keys are being deleted finds the new start in
    # its own statement. (A transaction holding one old key stands in for a long DELETE.)
    import time

    traveller = time_machine.travel("2026-12-06 12:00Z", tick=False)
    traveller.start()
    try:
        _history(account)
        assert send(account, "z-old", at(2026, 8, 20)) == "created"
        holder = _hold("SELECT 1 FROM usage_requestkey WHERE natural_key = 'req:z-old' FOR UPDATE")
        out: dict = {}
        prune = _in_thread(out, "prune", history.raw_history_prune)
        time.sleep(1.0)  # August dropped; the key DELETE waits at req:z-old
        resend = _in_thread(out, "r8", lambda: send(account, "r8", at(2026, 8)))
        resend.join(timeout=30)
        holder.rollback()
        holder.close()
        prune.join(timeout=30)
    finally:
        traveller.stop()
    assert "before 2026-09-01" in out["r8"], out
    assert out["prune"].keys == 2  # r8's and z-old's
    # August: r8's $0.0035 and z-old's $0.0035, each once.
    august = DailyUsage.objects.filter(account=account, day__month=8, source=Source.ESTIMATED)
    assert sorted(d.cost for d in august) == [EVENT_COST, EVENT_COST]


@postgresql_only
@pytest.mark.django_db(transaction=True)
@override_settings(RAW_RETENTION_DAYS=70)
def test_a_prune_behind_a_long_reader_does_not_stall_recording_and_finishes_after_it(account):
    # DROP TABLE waits for the reader; while it is queued every insert waits behind it. It
    # asks for 200 ms at a time and tries again later, so a live call waits well under 1 s.
    import time

    with time_machine.travel("2026-12-06 12:00Z", tick=False):
        _history(account)
    reader = _hold("SELECT count(*) FROM usage_usagerecord")  # holds its lock until rollback
    out: dict = {}
    with time_machine.travel("2026-12-06 12:00Z", tick=True):
        prune = _in_thread(out, "prune", history.raw_history_prune)
        time.sleep(0.5)  # the prune is waiting for its lock, or for its next try
        waits = []
        for n in range(5):
            started = time.monotonic()
            assert send(account, f"live{n}", None) == "created"
            waits.append(time.monotonic() - started)
            time.sleep(0.2)
        reader.rollback()
        reader.close()
        prune.join(timeout=60)
    assert max(waits) < 1.0, waits
    assert out["prune"].months == 1, out  # done once the reader was gone
    assert date(2026, 8, 1) not in history.partition_months()


def test_a_day_before_the_raw_history_is_never_rebuilt_from_nothing(account, admin_client):
    from usage.services.rollup import RawHistoryGone, rollup_rebuild

    RawHistoryPrune.objects.create(before=datetime(2026, 9, 1, tzinfo=UTC), months=1)
    with pytest.raises(RawHistoryGone, match="before 2026-09-01 were removed"):
        rollup_rebuild(account_id=account.pk, days=[date(2026, 8, 31)], source=Source.ESTIMATED)
    # Official and manual rows are never removed: their days rebuild as always.
    rollup_rebuild(account_id=account.pk, days=[date(2026, 8, 31)], source=Source.MANUAL)
    rollup_rebuild(account_id=account.pk, days=[date(2026, 9, 1)], source=Source.ESTIMATED)
    # The admin says so on the field instead of failing.
    form = {
        "account": account.pk,
        "provider": account.provider_id,
        "model": "gpt-4o",
        "bucket_start_0": "2026-08-31",
        "bucket_start_1": "12:00:00",
        "granularity": "event",
        "source": "estimated",
        "status": "ok",
        "currency": "USD",
        "cost": "1",
        **{f: 0 for f in ("input_tokens", "cache_read_tokens", "cache_write_tokens")},
        **{f: 0 for f in ("cache_write_1h_tokens", "output_tokens", "reasoning_tokens")},
        **{f: 0 for f in ("request_count", "seats", "search_queries", "images")},
        **{f: 0 for f in ("audio_seconds", "credits")},
        "tags": "{}",
        "raw": "{}",
    }
    response = admin_client.post("/admin/usage/usagerecord/add/", form)
    assert response.status_code == 200
    assert b"were removed (RAW_RETENTION_DAYS)" in response.content
    assert not UsageRecord.objects.exists()
    response = admin_client.post("/admin/usage/usagerecord/add/", {**form, "source": "manual"})
    errors = response.context and response.context["adminform"].form.errors
    assert response.status_code == 302, errors
    assert UsageRecord.objects.get().source == Source.MANUAL
