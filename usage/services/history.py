"""Raw history: the monthly partitions of per-request records, and RAW_RETENTION_DAYS.

On PostgreSQL, estimated (per-request) records live in one partition per UTC month (migration
0012 draws the layout). The months ahead are made by the daily `usage-history` task; a write
into a month nobody made yet makes it first (`partitions_ensure`), and a row that still finds
no month (a path that bypassed it) waits in the default partition until its month is made.
Removing raw history drops whole months: one `DROP TABLE` each, however many rows.

On SQLite there is one table: retention deletes rows, by the same whole-month rule.

Only estimated records go. The daily roll-ups, official and manual rows stay, so every total
and chart stays as it was; a RawHistoryPrune row says where the raw history now starts.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from usage.models import RawHistoryPrune, RequestKey, Source, UsageRecord

TABLE = UsageRecord._meta.db_table
ESTIMATED = f"{TABLE}_estimated"
ESTIMATED_DEFAULT = f"{ESTIMATED}_default"
# Serialises the making and dropping of partitions across processes and nodes.
_LOCK = 0x5EC0_0001
# A partition change waits at most this long for the tables' locks (a long export, say)
# instead of queueing every insert behind it; the next run or the next write tries again.
_LOCK_TIMEOUT = "5s"

# The months this process knows have a partition (PostgreSQL): the check before a write is a
# set lookup. A month dropped elsewhere stays listed, harmlessly: a row for it lands in the
# default partition, and writes before the raw history are refused anyway (history_refusal).
_known_months: set[date] | None = None


def month_start(day: date) -> date:
    return date(day.year, day.month, 1)


def month_after(month: date) -> date:
    return date(month.year + month.month // 12, month.month % 12 + 1, 1)


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


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
    return the names made. PostgreSQL only; safe to call from several nodes at once.

    Rows of such a month already waiting in the default partition move into it. The new
    table is attached rather than created as a partition: attaching takes a lock that lets
    inserts and reads of the other months go on.
    """
    if not partitioned():
        return []
    wanted = {month_start(m) for m in months}
    if _known_months is not None and wanted <= _known_months:
        return []
    made = []
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK])
        cursor.execute(f"SET LOCAL lock_timeout = '{_LOCK_TIMEOUT}'")
        existing = partition_months()
        for month in sorted(wanted - existing.keys()):
            name = month_partition_name(month)
            low, high = _midnight(month), _midnight(month_after(month))
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
        known = set(existing) | wanted
    transaction.on_commit(lambda: _remember(known))
    return made


def _remember(months: set[date]) -> None:
    global _known_months
    _known_months = (_known_months or set()) | months


def partitions_forget() -> None:
    """Forget the months this process knows (tests, and after partitions were dropped)."""
    global _known_months
    _known_months = None


def partitions_create_ahead(*, now: datetime | None = None) -> list[str]:
    """Make this month's partition and RAW_PARTITIONS_AHEAD more, so that live writes never
    make one; and give a month to any row waiting in the default partition."""
    if not partitioned():
        return []
    today = (now or timezone.now()).astimezone(UTC).date()
    months = [month_start(today)]
    for _ in range(settings.RAW_PARTITIONS_AHEAD):
        months.append(month_after(months[-1]))
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT DISTINCT date_trunc('month', bucket_start AT TIME ZONE 'UTC')::date "
            f"FROM {ESTIMATED_DEFAULT}"
        )
        months += [row[0] for row in cursor.fetchall()]
    partitions_forget()  # read the catalog again: another node may have dropped some
    return partitions_ensure(months=months)


def raw_history_cutoff(*, now: datetime | None = None) -> datetime | None:
    """Where RAW_RETENTION_DAYS puts the start of the raw history now: the first instant of
    the UTC month holding the day that many days ago. Only whole months go, so a record is
    kept at least RAW_RETENTION_DAYS and less than a month longer. None: keep forever."""
    days = settings.RAW_RETENTION_DAYS
    if days is None:
        return None
    day = ((now or timezone.now()) - timedelta(days=days)).astimezone(UTC).date()
    return _midnight(month_start(day))


@dataclass(frozen=True)
class PruneResult:
    before: datetime | None  # records before this were removed (None: retention is off)
    months: int  # monthly partitions dropped (PostgreSQL)
    records: int  # rows deleted one by one (SQLite; PostgreSQL's default partition)
    keys: int  # request keys deleted (after the records: not in drop_seconds)
    drop_seconds: float  # time spent removing records, keys not included


def raw_history_prune(*, now: datetime | None = None) -> PruneResult:
    """Remove the estimated records before the retention cutoff, and their request keys.

    Running it again removes nothing more. Afterwards, events before the cutoff are refused
    at ingestion (history_refusal): their keys are gone, so a resent one could not be told
    from a new one, and its roll-up, which stays, would count it twice.
    """
    before = raw_history_cutoff(now=now)
    if before is None:
        return PruneResult(before=None, months=0, records=0, keys=0, drop_seconds=0.0)
    started = time.perf_counter()
    months, records = _records_remove(before)
    drop_seconds = time.perf_counter() - started
    # One statement: batches would each scan past the dead rows of the ones before. It
    # locks only the keys it deletes, and no write wants those: events before `before`
    # are refused from now on.
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {RequestKey._meta.db_table} WHERE bucket_start < %s", [before])
        keys = cursor.rowcount
    if months or records or keys:
        RawHistoryPrune.objects.create(before=before, months=months, records=records)
    return PruneResult(
        before=before, months=months, records=records, keys=keys, drop_seconds=drop_seconds
    )


def _records_remove(before: datetime) -> tuple[int, int]:
    """(monthly partitions dropped, rows deleted) for the estimated records before `before`."""
    source = Source.ESTIMATED.value
    if not partitioned():
        deleted, _ = UsageRecord.objects.filter(source=source, bucket_start__lt=before).delete()
        return 0, deleted
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK])
        cursor.execute(f"SET LOCAL lock_timeout = '{_LOCK_TIMEOUT}'")
        first_kept = before.astimezone(UTC).date()
        gone = [
            name for month, name in partition_months().items() if month_after(month) <= first_kept
        ]
        for name in gone:
            cursor.execute(f"DROP TABLE {name}")
        cursor.execute(f"DELETE FROM {ESTIMATED_DEFAULT} WHERE bucket_start < %s", [before])
        records = cursor.rowcount
    transaction.on_commit(partitions_forget)
    return len(gone), records


def history_refusal(*, times: Iterable[datetime]) -> datetime | None:
    """The raw history's start, when any of `times` is before it; else None.

    Live traffic never pays for the check: retention is at least RAW_RETENTION_MIN_DAYS, so
    nothing newer than that can be before the start, and only older events read it.
    """
    recent = timezone.now() - timedelta(days=settings.RAW_RETENTION_MIN_DAYS)
    oldest = min(times, default=None)
    if oldest is None or oldest >= recent:
        return None
    from usage.selectors import raw_history_start

    start = raw_history_start()
    return start if start is not None and oldest < start else None
