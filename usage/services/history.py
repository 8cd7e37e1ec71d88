"""Raw history: the monthly partitions of per-request records, and RAW_RETENTION_DAYS.

On PostgreSQL, estimated (per-request) records live in one partition per UTC month (migration
0012 draws the layout). This month and the next ones are made ahead by the daily
`usage-history` task. Recording never makes a table (DDL waits for locks, and a billed call
must not): a row for a month with no table yet (a backfill) waits in the default partition
until the next daily run gives it its month. Removing raw history drops whole months: one
`DROP TABLE` each, however many rows.

On SQLite there is one table: retention deletes rows, by the same whole-month rule.

Only estimated records go. The daily roll-ups, official and manual rows stay, so every total
and chart stays as it was; a RawHistoryPrune row says where the raw history now starts.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from django.conf import settings
from django.db import OperationalError, connection, transaction
from django.utils import timezone
from psycopg.errors import LockNotAvailable

from usage.models import RawHistoryPrune, RequestKey, Source, UsageRecord
from usage.selectors import month_bounds, raw_history_start
from usage.services.rollup import day_start

TABLE = UsageRecord._meta.db_table
ESTIMATED = f"{TABLE}_estimated"
ESTIMATED_DEFAULT = f"{ESTIMATED}_default"
# Serialises the making and dropping of partitions across processes and nodes.
_LOCK = 0x5EC0_0001
# Making or dropping a month needs a lock that every insert of every month queues behind once
# it is asked for. So it is asked for briefly, and again a little later, rather than let one
# long reader (an export, pg_dump) stall all ingestion behind the waiting request.
_LOCK_TIMEOUT = "200ms"
_ATTEMPTS = 30
_RETRY_SECONDS = 2.0
# Older rows (a backfill: events may go back to 2000) stay in the default partition, so that
# one batch cannot make hundreds of tables that every query by id then probes.
MONTHS_BACK_WITH_OWN_TABLE = 24


def month_partition_name(month: date) -> str:
    return f"{TABLE}_y{month.year}m{month.month:02}"


def partitioned() -> bool:
    return connection.vendor == "postgresql"


def partition_months() -> dict[date, str]:
    """The monthly partitions that exist (PostgreSQL): {first day of the month: table name}."""
    if not partitioned():
        return {}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = %s::regclass",
            [ESTIMATED],
        )
        names = [row[0] for row in cursor.fetchall()]
    months = {}
    for name in names:
        if name == ESTIMATED_DEFAULT:
            continue
        year, month = name.removeprefix(f"{TABLE}_y").split("m")
        months[date(int(year), int(month), 1)] = name
    return months


def partitions_ensure(*, months: Iterable[date]) -> list[str]:
    """Make the monthly partitions of `months` (any day in each) that do not exist yet;
    return the names made. PostgreSQL only; safe to run on several nodes at once.

    Rows of such a month waiting in the default partition move into it. The new table is
    attached rather than created as a partition: attaching lets inserts into the other
    months go on. Never called while recording: a write never waits for a table to be made.
    """
    if not partitioned():
        return []
    wanted = {month_bounds(m)[0] for m in months}

    def make(cursor) -> list[str]:
        made = []
        for month in sorted(wanted - partition_months().keys()):
            name = month_partition_name(month)
            low, high = (day_start(d) for d in month_bounds(month))
            cursor.execute(
                f"CREATE TABLE {name} (LIKE {ESTIMATED} INCLUDING DEFAULTS INCLUDING CONSTRAINTS "
                "INCLUDING STORAGE)"
            )
            cursor.execute(
                f"WITH gone AS (DELETE FROM {ESTIMATED_DEFAULT} "
                "WHERE bucket_start >= %s AND bucket_start < %s RETURNING *) "
                f"INSERT INTO {name} SELECT * FROM gone",
                [low, high],
            )
            cursor.execute(
                f"ALTER TABLE {ESTIMATED} ATTACH PARTITION {name} FOR VALUES FROM (%s) TO (%s)",
                [low, high],
            )
            made.append(name)
        return made

    return _with_partition_lock(make)


def _with_partition_lock(step):
    """Run `step(cursor)` in a transaction of its own holding the partition lock, waiting at
    most _LOCK_TIMEOUT for each table lock, and try again later when one was not granted.

    Inside a caller's transaction (tests) it runs once as it is: a lock timeout set there
    would last until that transaction's end, and a failed try could not be taken back.
    """
    if connection.in_atomic_block:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK])
            return step(cursor)
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK])
                cursor.execute(f"SET LOCAL lock_timeout = '{_LOCK_TIMEOUT}'")
                return step(cursor)
        except OperationalError as exc:
            if not isinstance(exc.__cause__, LockNotAvailable) or attempt == _ATTEMPTS:
                raise
        time.sleep(_RETRY_SECONDS * random.uniform(0.5, 1.5))
    raise AssertionError("unreachable")


def partitions_create_ahead(*, now: datetime | None = None) -> list[str]:
    """Make this month's partition and RAW_PARTITIONS_AHEAD more, so that live writes find
    theirs; and give their month to rows waiting in the default partition, back to
    MONTHS_BACK_WITH_OWN_TABLE months ago."""
    if not partitioned():
        return []
    today = (now or timezone.now()).astimezone(UTC).date()
    months = [month_bounds(today)[0]]
    for _ in range(settings.RAW_PARTITIONS_AHEAD):
        months.append(month_bounds(months[-1])[1])
    floor = months[0]
    for _ in range(MONTHS_BACK_WITH_OWN_TABLE):
        floor = month_bounds(floor - timedelta(days=1))[0]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT DISTINCT date_trunc('month', bucket_start AT TIME ZONE 'UTC')::date "
            f"FROM {ESTIMATED_DEFAULT} WHERE bucket_start >= %s",
            [day_start(floor)],
        )
        months += [row[0] for row in cursor.fetchall()]
    return partitions_ensure(months=months)


def raw_history_cutoff(*, now: datetime | None = None) -> datetime | None:
    """Where RAW_RETENTION_DAYS puts the start of the raw history now: the first instant of
    the UTC month holding the day that many days ago. Only whole months go, so a record is
    kept at least RAW_RETENTION_DAYS and less than a month longer. None: keep forever."""
    days = settings.RAW_RETENTION_DAYS
    if days is None:
        return None
    day = ((now or timezone.now()) - timedelta(days=days)).astimezone(UTC).date()
    return day_start(month_bounds(day)[0])


@dataclass(frozen=True)
class PruneResult:
    before: datetime | None  # the raw history starts here (None: retention is off)
    months: int  # monthly partitions dropped (PostgreSQL)
    records: int  # rows deleted one by one (SQLite; PostgreSQL's default partition)
    keys: int  # request keys deleted (after the records: not in drop_seconds)
    drop_seconds: float  # time spent removing the records


def raw_history_prune(*, now: datetime | None = None) -> PruneResult:
    """Remove the estimated records before the retention cutoff, and their request keys.

    The start of the raw history moves first, in a transaction of its own: from its commit on
    no write adds a record or key before it (the recording statement reads it), so none can
    slip in between the removal of a record and of its key and be counted twice. Then the
    records go, then their keys. An interrupted run is finished by the next; a run with
    nothing new to remove does nothing.
    """
    before = raw_history_cutoff(now=now)
    if before is None:
        return PruneResult(before=None, months=0, records=0, keys=0, drop_seconds=0.0)
    prune = _raw_history_start_move(before)
    if prune is None:
        return PruneResult(before=before, months=0, records=0, keys=0, drop_seconds=0.0)
    started = time.perf_counter()
    months, records = _records_remove(prune.before)
    drop_seconds = time.perf_counter() - started
    # One statement: batches would each scan past the dead rows of the ones before. It
    # locks only the keys it deletes, which no write can want any more.
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {RequestKey._meta.db_table} WHERE bucket_start < %s", [prune.before]
        )
        keys = cursor.rowcount
    RawHistoryPrune.objects.filter(pk=prune.pk).update(
        months=months, records=records, keys=keys, completed_at=timezone.now()
    )
    return PruneResult(
        before=prune.before, months=months, records=records, keys=keys, drop_seconds=drop_seconds
    )


def _raw_history_start_move(before: datetime) -> RawHistoryPrune | None:
    """Make `before` the start of the raw history, unless it is already there or later;
    return the removal to do now (this one, or one an interrupted run left), or None."""
    table = RawHistoryPrune._meta.db_table

    def move(cursor) -> RawHistoryPrune | None:
        if partitioned():
            # Waits for the recording statements under way (each reads this table) and holds
            # new ones for the moment to commit: after it, none works with the old start.
            # SQLite has one writer at a time, and records read the start inside their
            # transaction (usage.services.requests).
            cursor.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        latest = RawHistoryPrune.objects.order_by("-before").first()
        if latest is None or latest.before < before:
            return RawHistoryPrune.objects.create(before=before)
        return latest if latest.completed_at is None else None

    if partitioned():
        return _with_partition_lock(move)
    with transaction.atomic(), connection.cursor() as cursor:
        return move(cursor)


def _records_remove(before: datetime) -> tuple[int, int]:
    """(monthly partitions dropped, rows deleted) for the estimated records before `before`."""
    source = Source.ESTIMATED.value
    if not partitioned():
        deleted, _ = UsageRecord.objects.filter(source=source, bucket_start__lt=before).delete()
        return 0, deleted

    def remove(cursor) -> tuple[int, int]:
        first_kept = before.astimezone(UTC).date()
        months = partition_months()
        gone = [name for month, name in months.items() if month_bounds(month)[1] <= first_kept]
        for name in gone:
            cursor.execute(f"DROP TABLE {name}")
        cursor.execute(f"DELETE FROM {ESTIMATED_DEFAULT} WHERE bucket_start < %s", [before])
        return len(gone), cursor.rowcount

    return _with_partition_lock(remove)


def history_refusal(*, times: Iterable[datetime]) -> datetime | None:
    """The raw history's start, when any of `times` is before it; else None.

    Live traffic never pays for the check: retention is at least RAW_RETENTION_MIN_DAYS, so
    nothing newer than that can be before the start, and only older events read it.
    """
    recent = timezone.now() - timedelta(days=settings.RAW_RETENTION_MIN_DAYS)
    oldest = min(times, default=None)
    if oldest is None or oldest >= recent:
        return None
    start = raw_history_start()
    return start if start is not None and oldest < start else None
