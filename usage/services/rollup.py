"""The daily roll-up (account × model × UTC day × source), kept current by every write path.

Two ways in, both exact (and both, like the one-statement PostgreSQL insert in requests.py,
end in `spend_changed`, which has the owner's alerts evaluated soon after):
- `rollup_rebuild` recomputes whole (account, day, source) groups from the records. Used for
  synced and manual data, where a write can replace or delete values.
- `rollup_add` adds just-created records onto the roll-up with one upsert per group. Used for
  per-request ingestion, where records are only ever inserted and a day can hold millions.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from django.db import connection, transaction
from django.db.models import Exists, OuterRef

from usage.models import TOKEN_FIELDS, DailyUsage, RecordStatus, Source, UsageRecord

ROLLUP_COUNTERS = ("request_count", *TOKEN_FIELDS)


def day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def spend_changed(*, account_ids: Iterable[int] = (), owner_id: int | None = None) -> None:
    """Every change in spend ends here: the owner's alerts are evaluated soon after it commits.

    The roll-up writers call it (every write of spend maintains the roll-up), as does the
    deletion of an account. The request waits for the commit: an evaluation must see the
    change, and a rolled-back write needs none. Outside a transaction it runs at once.
    """
    from alerts.services import alerts_evaluation_request

    # robust: a failure to ask is logged, never turned into an error of the committed write
    # (the evaluation every 15 minutes still sees the change).
    # Lambdas, not partials: the robust error log names the callback by its __qualname__.
    for account_id in set(account_ids):
        transaction.on_commit(
            lambda a=account_id: alerts_evaluation_request(account_id=a), robust=True
        )
    if owner_id is not None:
        transaction.on_commit(lambda: alerts_evaluation_request(owner_id=owner_id), robust=True)


def rollup_rebuild(*, account_id: int, days: Iterable[date], source: str) -> None:
    """Recompute the roll-up rows of one account and source for the given UTC days.

    One DELETE and one INSERT … SELECT … GROUP BY, so the records never travel to Python.
    Call inside the transaction that changed the records, so readers never see a mix.
    """
    days = sorted(set(days))
    if not days:
        return
    DailyUsage.objects.filter(account_id=account_id, source=source, day__in=days).delete()
    ops = connection.ops
    if connection.vendor == "sqlite":
        day_sql, money_sum = "date(bucket_start)", "decimal_sum"
    else:
        day_sql, money_sum = "(bucket_start AT TIME ZONE 'UTC')::date", "SUM"
    # Official token lines carry no cost by design (money comes on cost lines): not "unpriced".
    unpriced = "cost IS NULL" if source != Source.OFFICIAL else "1 = 0"
    columns = [
        "account_id",
        "provider_id",
        "model",
        "day",
        "source",
        "cost",
        "record_count",
        "unpriced_count",
        "unpriced_tokens",
        "failed_count",
        *ROLLUP_COUNTERS,
        "superseded",
    ]
    selects = [
        "account_id",
        "provider_id",
        "model",
        day_sql,
        "source",
        f"COALESCE({money_sum}(cost), 0)",
        "COUNT(*)",
        f"SUM(CASE WHEN {unpriced} THEN 1 ELSE 0 END)",
        f"SUM(CASE WHEN {unpriced} THEN input_tokens + output_tokens ELSE 0 END)",
        "SUM(CASE WHEN status = %s THEN 1 ELSE 0 END)",
        *(f"SUM({f})" for f in ROLLUP_COUNTERS),
        "FALSE",  # set just below, once the official rows of these days are in place
    ]
    sql = (
        f"INSERT INTO {DailyUsage._meta.db_table} ({', '.join(columns)}) "
        f"SELECT {', '.join(selects)} FROM {UsageRecord._meta.db_table} "
        "WHERE account_id = %s AND source = %s AND bucket_start >= %s AND bucket_start < %s "
        f"AND {day_sql} IN ({', '.join(['%s'] * len(days))}) "
        f"GROUP BY account_id, provider_id, model, {day_sql}, source"
    )
    params = [
        RecordStatus.FAILED,
        account_id,
        source,
        ops.adapt_datetimefield_value(day_start(days[0])),
        ops.adapt_datetimefield_value(day_start(days[-1] + timedelta(days=1))),
        *(ops.adapt_datefield_value(d) for d in days),
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
    rollup_mark_superseded(account_id=account_id, days=days)
    spend_changed(account_ids=[account_id])


def rollup_mark_superseded(*, account_id: int, days: Iterable[date]) -> None:
    """Flag the estimated roll-up rows of days that have official figures (and unflag the rest).

    Official supersedes estimated: totals leave flagged rows out instead of adding them on top.
    """
    days = sorted(set(days))
    if not days:
        return
    official = DailyUsage.objects.filter(
        account_id=account_id, day=OuterRef("day"), source=Source.OFFICIAL
    )
    DailyUsage.objects.filter(account_id=account_id, source=Source.ESTIMATED, day__in=days).update(
        superseded=Exists(official)
    )


def rollup_add(records: Iterable[UsageRecord]) -> None:
    """Add newly inserted records (never updates of existing ones) onto the roll-up."""
    groups: dict[tuple, dict] = defaultdict(
        lambda: {
            "cost": Decimal(0),
            "records": 0,
            "unpriced": 0,
            "unpriced_tokens": 0,
            "failed": 0,
            **{f: 0 for f in ROLLUP_COUNTERS},
        }
    )
    for r in records:
        g = groups[
            (r.account_id, r.provider_id, r.model, r.bucket_start.astimezone(UTC).date(), r.source)
        ]
        g["records"] += 1
        if r.cost is None:
            g["unpriced"] += 1
            g["unpriced_tokens"] += r.input_tokens + r.output_tokens
        else:
            g["cost"] += r.cost
        if r.status == RecordStatus.FAILED:
            g["failed"] += 1
        for f in ROLLUP_COUNTERS:
            g[f] += getattr(r, f)
    if not groups:
        return
    table = DailyUsage._meta.db_table
    counters = [
        "record_count",
        "unpriced_count",
        "unpriced_tokens",
        "failed_count",
        *ROLLUP_COUNTERS,
    ]
    add_cost = (
        f"cost = decimal_add({table}.cost, excluded.cost)"
        if connection.vendor == "sqlite"
        else f"cost = {table}.cost + excluded.cost"
    )
    columns = ["account_id", "provider_id", "model", "day", "source", "cost", *counters]
    # A new estimated row is born superseded when its day already has official figures.
    superseded = (
        f"(%s = 'estimated' AND EXISTS (SELECT 1 FROM {table} o WHERE o.account_id = %s "
        "AND o.day = %s AND o.source = 'official'))"
    )
    # Identifiers are constants of this module; values go in as parameters.
    sql = (
        f"INSERT INTO {table} ({', '.join(columns)}, superseded) "
        f"VALUES ({', '.join(['%s'] * len(columns))}, {superseded}) "
        f"ON CONFLICT (account_id, day, source, model) DO UPDATE SET {add_cost}, "
        + ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in counters)
    )
    params = []
    # A stable order keeps concurrent batches from deadlocking on each other's rows.
    for key in sorted(groups, key=lambda k: (k[0], k[3], k[4], k[2])):
        g = groups[key]
        account_id, provider_id, model, day, source = key
        params.append(
            [
                account_id,
                provider_id,
                model,
                day,
                source,
                g["cost"],
                g["records"],
                g["unpriced"],
                g["unpriced_tokens"],
                g["failed"],
                *(g[f] for f in ROLLUP_COUNTERS),
                source,
                account_id,
                day,
            ]
        )
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)
    spend_changed(account_ids={key[0] for key in groups})
