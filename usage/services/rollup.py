"""The roll-ups, kept current by every write path: DailyUsage (account × model × UTC day ×
source) and DailyAttribution (account × UTC day × source × dimension (project/user/feature
tag, ingest key) × value).

ONE definition, below: `ROLLUP_SUMS` says which column sums which expression over which usage
records (both tables keep the same sums, `usage.models.RollupTotals`), each `Rollup` says
which table and which key (columns taken from a record by SQL expressions, optionally joined
with a few rows: each record counts once per attribution dimension), and `_superseded`
is the "official supersedes estimated" rule. Every writer is generated from them and writes
every roll-up of `ROLLUPS` (in the same statement or transaction), so a new token type is one
name in `usage.models.TOKEN_FIELDS` (plus its model fields), and a new roll-up one `Rollup`:
- `rollup_upsert_sql`: the INSERT … SELECT … GROUP BY … ON CONFLICT DO UPDATE that adds any set
  of records onto one roll-up. requests.py's one-statement PostgreSQL insert embeds it once per
  roll-up (reading its INSERT's RETURNING); the two functions below run it over other rows.
- `rollup_add` adds just-created records (objects, not yet read back) with it, from a VALUES
  list. Used for per-request ingestion on SQLite, where records are only ever inserted.
- `rollup_rebuild` deletes whole (account, day, source) groups and adds them again from the
  records table. Used for synced and manual data, where a write can replace or delete values.
All of them end in `spend_changed`, which has the workspace's alerts evaluated soon after.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from django.db import connection, transaction

from usage.bounds import TAG_KEYS
from usage.models import (
    TOKEN_FIELDS,
    DailyAttribution,
    DailyUsage,
    Dimension,
    RecordStatus,
    RollupTotals,
    Source,
    UsageRecord,
)


@dataclass(frozen=True)
class RollupSum:
    """One roll-up column: the sum of `value` (SQL over one usage record; "1" counts records)
    over a group's records, or only those matching `where`."""

    column: str
    value: str = "1"
    where: str | None = None
    money: bool = False


# Official token lines carry no cost by design (money comes on cost lines): not "unpriced".
_UNPRICED = f"cost IS NULL AND source <> '{Source.OFFICIAL.value}'"

ROLLUP_SUMS = (
    RollupSum("cost", "cost", money=True),  # SUM skips NULL: the priced records only
    RollupSum("record_count"),
    RollupSum("unpriced_count", where=_UNPRICED),
    RollupSum("unpriced_tokens", "input_tokens + output_tokens", where=_UNPRICED),
    RollupSum("failed_count", where=f"status = '{RecordStatus.FAILED.value}'"),
    *(RollupSum(f, f) for f in ("request_count", *TOKEN_FIELDS)),
)
# The usage-record columns the roll-ups read: their keys' and those the sums name.
ROLLUP_READS = (
    "account_id",
    "provider_id",
    "model",
    "bucket_start",
    "source",
    "tags",
    "ingest_key_id",
    "cost",
    "status",
    "request_count",
    *TOKEN_FIELDS,
)
# The UTC day of a record's bucket_start.
_DAY = {
    "postgresql": "(bucket_start AT TIME ZONE 'UTC')::date",
    "sqlite": "date(bucket_start)",
}


def _tag(name: str) -> dict[str, str]:
    """A tag of the record's `tags` (usage.bounds.TAG_KEYS), '' when it has none."""
    return {
        "postgresql": f"COALESCE(tags ->> '{name}', '')",
        "sqlite": f"COALESCE(json_extract(tags, '$.{name}'), '')",
    }


# The attribution roll-up's value of each dimension, from a record: its tag, or the id (as
# text) of the ingest key that wrote it; '' for none (no such tag, no key).
ATTRIBUTION_VALUES = {
    **{Dimension(tag): _tag(tag) for tag in TAG_KEYS},
    Dimension.INGEST_KEY: "COALESCE(CAST(ingest_key_id AS TEXT), '')",
}


def _attribution_value(vendor: str) -> str:
    whens = " ".join(
        f"WHEN '{d.value}' THEN {e if isinstance(e, str) else e[vendor]}"
        for d, e in ATTRIBUTION_VALUES.items()
    )
    return f"CASE dim.dimension {whens} END"


@dataclass(frozen=True)
class Rollup:
    """One roll-up table. `key`: each key column with the SQL (one string, or one per vendor)
    that takes it from a usage record; a row sums the records sharing all of them. `conflict`:
    the columns of the table's unique constraint, in the order rows are written in (so that
    concurrent writers never deadlock on each other's rows); the key columns left out of it
    follow from those in it (an account's provider). `join`: SQL joined to the records before
    the key is taken (rows the key's expressions may read besides the record's columns)."""

    model: type[RollupTotals]
    key: tuple[tuple[str, str | Mapping[str, str]], ...]
    conflict: tuple[str, ...]
    join: str = ""

    @property
    def table(self) -> str:
        return self.model._meta.db_table

    def key_sql(self, vendor: str) -> list[tuple[str, str]]:
        return [(c, e if isinstance(e, str) else e[vendor]) for c, e in self.key]


DAILY_USAGE = Rollup(
    DailyUsage,
    key=(
        ("account_id", "account_id"),
        ("provider_id", "provider_id"),
        ("model", "model"),
        ("day", _DAY),
        ("source", "source"),
    ),
    conflict=("account_id", "day", "source", "model"),
)
DAILY_ATTRIBUTION = Rollup(
    DailyAttribution,
    key=(
        ("account_id", "account_id"),
        ("day", _DAY),
        ("source", "source"),
        ("dimension", "dim.dimension"),
        ("value", {v: _attribution_value(v) for v in _DAY}),
    ),
    conflict=("account_id", "dimension", "day", "source", "value"),
    # Each record once per dimension.
    join="CROSS JOIN ("
    + " UNION ALL ".join(f"SELECT '{d.value}' AS dimension" for d in ATTRIBUTION_VALUES)
    + ") dim",
)
# Every roll-up, in the order every writer writes them (one order: no deadlocks between them).
ROLLUPS = (DAILY_USAGE, DAILY_ATTRIBUTION)


def _superseded(*, account: str, day: str, source: str) -> str:
    """Official supersedes estimated: an estimated row of a day with official figures.

    Totals leave such rows out instead of adding them on top; the flag is stored so reads need
    no subquery. The SQL of the rule, for a row (of any roll-up) whose account, day and source
    are given: "official figures" are the account's official DailyUsage rows of that day.
    """
    daily = DailyUsage._meta.db_table
    return (
        f"({source} = '{Source.ESTIMATED.value}' AND EXISTS (SELECT 1 FROM {daily} o "
        f"WHERE o.account_id = {account} AND o.day = {day} "
        f"AND o.source = '{Source.OFFICIAL.value}'))"
    )


def _aggregate(s: RollupSum, vendor: str) -> str:
    only = f" FILTER (WHERE {s.where})" if s.where else ""
    if s.value == "1":
        return f"COUNT(*){only}"
    total = f"{'decimal_sum' if s.money and vendor == 'sqlite' else 'SUM'}({s.value}){only}"
    return f"COALESCE({total}, 0)" if s.where or s.money else total


def _add(s: RollupSum, vendor: str) -> str:
    if s.money and vendor == "sqlite":  # exact: see usage/db.py
        return f"{s.column} = decimal_add(d.{s.column}, excluded.{s.column})"
    return f"{s.column} = d.{s.column} + excluded.{s.column}"


def rollup_upsert_sql(
    *, vendor: str, rows: str, where: str = "", rollup: Rollup = DAILY_USAGE
) -> str:
    """The statement adding the usage records of `rows` (a table or CTE name, with an optional
    WHERE clause) onto one roll-up: new rows are inserted, existing ones added to.

    A new estimated row is born superseded when its day already has official figures. Groups
    are written in the order of the roll-up's `conflict` columns. Identifiers and literals
    are this module's constants.
    """
    key = rollup.key_sql(vendor)
    names = [c for c, _ in key]
    columns = ", ".join((*names, *(s.column for s in ROLLUP_SUMS), "superseded"))
    selected = ", ".join(
        (
            *(e if e == c else f"{e} AS {c}" for c, e in key),
            *(_aggregate(s, vendor) for s in ROLLUP_SUMS),
        )
    )
    superseded = _superseded(account="g.account_id", day="g.day", source="g.source")
    group = ", ".join(str(n) for n in range(1, len(key) + 1))
    order = ", ".join(str(names.index(c) + 1) for c in rollup.conflict)
    return (
        f"INSERT INTO {rollup.table} AS d ({columns}) SELECT g.*, {superseded} FROM "
        f"(SELECT {selected} FROM {rows} {rollup.join} {where} GROUP BY {group}) g "
        f"ORDER BY {order} "
        f"ON CONFLICT ({', '.join(rollup.conflict)}) DO UPDATE SET "
        + ", ".join(_add(s, vendor) for s in ROLLUP_SUMS)
    )


def day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def spend_changed(*, account_ids: Iterable[int] = (), workspace_id: int | None = None) -> None:
    """Every change in spend ends here: the workspace's alerts are evaluated soon after it
    commits.

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
    if workspace_id is not None:
        transaction.on_commit(
            lambda: alerts_evaluation_request(workspace_id=workspace_id), robust=True
        )


def rollup_rebuild(
    *,
    account_id: int,
    days: Iterable[date],
    source: str,
    rollups: Sequence[Rollup] = ROLLUPS,
) -> None:
    """Recompute the roll-up rows (of every roll-up) of one account and source for the UTC days.

    Per roll-up one DELETE and one INSERT … SELECT … GROUP BY, so the records never travel to
    Python. Call inside the transaction that changed the records, so readers never see a mix.
    `rollups`: only for a migration that runs before some roll-up's table exists.
    """
    days = sorted(set(days))
    if not days:
        return
    if source == Source.ESTIMATED:
        _raw_history_check(days[0])
    ops, vendor = connection.ops, connection.vendor
    where = (
        "WHERE account_id = %s AND source = %s AND bucket_start >= %s AND bucket_start < %s "
        f"AND {_DAY[vendor]} IN ({', '.join(['%s'] * len(days))})"
    )
    params = [
        account_id,
        source,
        ops.adapt_datetimefield_value(day_start(days[0])),
        ops.adapt_datetimefield_value(day_start(days[-1] + timedelta(days=1))),
        *(ops.adapt_datefield_value(d) for d in days),
    ]
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        for rollup in rollups:
            rollup.model.objects.filter(account_id=account_id, source=source, day__in=days).delete()
            sql = rollup_upsert_sql(
                vendor=vendor, rows=UsageRecord._meta.db_table, where=where, rollup=rollup
            )
            cursor.execute(sql, params)
        # New official figures (or none left) change the flag of that day's estimated rows.
        rollup_mark_superseded(account_id=account_id, days=days, rollups=rollups)
    spend_changed(account_ids=[account_id])


class RawHistoryGone(ValueError):
    """A roll-up of estimated spend was to be rebuilt for a day whose records were removed
    (RAW_RETENTION_DAYS): the rebuild would replace its totals with nothing."""


def _raw_history_check(day: date) -> None:
    from usage.selectors import raw_history_missing

    kept_from = raw_history_missing(start=day)
    if kept_from is not None:
        raise RawHistoryGone(
            f"per-request records before {kept_from} were removed (RAW_RETENTION_DAYS): "
            f"the estimated totals of {day} can no longer be rebuilt from them"
        )


def rollup_mark_superseded(
    *, account_id: int, days: Iterable[date], rollups: Sequence[Rollup] = ROLLUPS
) -> None:
    """Flag the estimated rows (of every roll-up) of days that have official figures, and
    unflag the rest. The same rule (`_superseded`) as a new row is born with."""
    days = sorted(set(days))
    if not days:
        return
    params = [
        account_id,
        Source.ESTIMATED.value,
        *(connection.ops.adapt_datefield_value(d) for d in days),
    ]
    with connection.cursor() as cursor:
        for rollup in rollups:
            t = rollup.table
            rule = _superseded(account=f"{t}.account_id", day=f"{t}.day", source=f"{t}.source")
            cursor.execute(
                f"UPDATE {t} SET superseded = {rule} WHERE account_id = %s AND source = %s "
                f"AND day IN ({', '.join(['%s'] * len(days))})",
                params,
            )


def rollup_backfill(*, rollup: Rollup) -> None:
    """Fill a new, empty roll-up from every usage record there is: what the migration adding
    it runs. Its rows are born with their superseded flags, the other roll-ups being current.
    """
    sql = rollup_upsert_sql(
        vendor=connection.vendor, rows=UsageRecord._meta.db_table, rollup=rollup
    )
    with connection.cursor() as cursor:
        cursor.execute(sql)


_ADD_CHUNK = 1000  # records per statement: keeps SQLite under its 32,766 bound-parameter limit


def rollup_add(records: Iterable[UsageRecord]) -> None:
    """Add newly inserted records (never updates of existing ones) onto every roll-up.

    Anything with the ROLLUP_READS attributes will do (model instances or namespaces): the
    records go in as a VALUES list that the generated upserts group and add. Call inside the
    transaction that inserted them.
    """
    records = list(records)
    if not records:
        return
    vendor = connection.vendor
    fields = [UsageRecord._meta.get_field(name) for name in ROLLUP_READS]
    if vendor == "postgresql":  # typed, so that a column of only NULLs still sums
        slots = [f"%s::{f.db_type(connection)}" for f in fields]
    else:
        slots = ["%s"] * len(fields)
    row_sql = f"({', '.join(slots)})"
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        for i in range(0, len(records), _ADD_CHUNK):
            chunk = records[i : i + _ADD_CHUNK]
            params = [
                f.get_db_prep_value(getattr(r, f.attname), connection)
                for r in chunk
                for f in fields
            ]
            values = ", ".join([row_sql] * len(chunk))
            head = f"WITH r ({', '.join(ROLLUP_READS)}) AS (VALUES {values}) "
            for rollup in ROLLUPS:
                cursor.execute(
                    head + rollup_upsert_sql(vendor=vendor, rows="r", rollup=rollup), params
                )
    spend_changed(account_ids={r.account_id for r in records})
