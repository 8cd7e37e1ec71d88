"""Recording per-request usage (ingestion API and proxy): priced, idempotent, rolled up.

A request id is the idempotency key: `INSERT … ON CONFLICT DO NOTHING RETURNING` into
RequestKey lets the database (not a read-then-write race) decide which events are new, also
across concurrent batches and across months; only those are written as records and added onto
the roll-up.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import cache
from types import SimpleNamespace

from django.apps import apps
from django.db import DEFAULT_DB_ALIAS, connection, connections, models, transaction
from django.utils import timezone

from costtracker import jsontext
from costtracker.db import Statement, fetch_prepared, pg_array_literal
from providers.models import IngestKey, ProviderAccount
from usage import bounds
from usage.extraction import RequestUsage
from usage.models import (
    Granularity,
    RawHistoryPrune,
    RecordStatus,
    RequestKey,
    Source,
    UsageRecord,
)
from usage.pricing import Costing, costing_for
from usage.pricing import Price as PriceRule
from usage.services.history import history_refusal
from usage.services.prices import PriceBook
from usage.services.rollup import (
    ROLLUP_READS,
    ROLLUPS,
    rollup_add,
    rollup_upsert_sql,
    spend_changed,
)

_CHUNK = 400  # rows per INSERT: keeps SQLite under its 32,766 bound-parameter limit
COST_QUANTUM = Decimal("1e-12")


@dataclass
class RequestEvent:
    request_id: str
    usage: RequestUsage
    occurred_at: datetime | None = None
    status: str = RecordStatus.OK
    tags: dict = field(default_factory=dict)
    raw_usage: dict | None = None


def compute_rate(account: ProviderAccount) -> Decimal | None:
    """The account's compute rate (USD per hour) for local models, or None when unset.

    A value that is not a non-negative number counts as unset rather than failing every write.
    """
    rate = (account.config or {}).get("compute_rate_per_hour")
    if rate in (None, "") or isinstance(rate, bool):
        return None
    try:
        value = Decimal(str(rate))
    except ArithmeticError:
        return None
    return value if value.is_finite() and value >= 0 else None


def request_costing(
    *, account: ProviderAccount, usage: RequestUsage, rule: PriceRule | None
) -> Costing:
    """The itemised cost of one request for this account (its provider's rule); the lines an
    explanation shows are the ones :func:`request_cost` adds up."""
    return costing_for(
        account.provider.slug,
        usage,
        rule,
        compute_rate_per_hour=compute_rate(account),
        account_config=account.config or {},
    )


def stored_cost(cost: Decimal | None) -> Decimal | None:
    """A computed cost as it is stored: bounded, rounded to the column's 12 places.

    Raises ValueError (OutOfBounds) when the figure is outside the cost bound.
    """
    if cost is None:
        return None
    if bounds.COST.problem(cost):
        raise bounds.OutOfBounds(
            "cost", f"{cost:.2E} USD for this usage and price is outside the bound"
        )
    return cost.quantize(COST_QUANTUM)


def request_cost(
    *, account: ProviderAccount, usage: RequestUsage, rule: PriceRule | None
) -> Decimal | None:
    """USD cost of one request for this account (None = unpriced), rounded as stored.

    Raises ValueError (OutOfBounds) when the figure is outside the cost bound.
    """
    return stored_cost(request_costing(account=account, usage=usage, rule=rule).total)


def _record_values(
    *,
    account: ProviderAccount,
    event: RequestEvent,
    book: PriceBook,
    now: datetime,
    ingest_key_id: int | None,
) -> dict:
    """Column values (by attname) of the record for one event, priced at its own time."""
    usage = event.usage
    bounds.values_check(usage, bounds=bounds.REQUEST, prefix="usage.")  # a ValueError: rejected
    at = (event.occurred_at or now).astimezone(UTC)
    if event.status == RecordStatus.FAILED:
        cost = Decimal(0)  # the provider rejected it: nothing was billed
    elif event.status == RecordStatus.INCOMPLETE and not usage.found:
        cost = None  # a cut-off call with no usage seen: unknown, never a silent $0
    else:
        rule = book.rule_for(provider=account.provider, model=usage.model, at=at)
        cost = request_cost(account=account, usage=usage, rule=rule)
    return {
        "account_id": account.pk,
        "provider_id": account.provider_id,
        "natural_key": f"req:{event.request_id}",
        "ingest_key_id": ingest_key_id,
        "model": usage.model[:200],
        "line_item": "",
        "description": "",
        "request_id": event.request_id,
        "bucket_start": at,
        "granularity": Granularity.EVENT.value,
        "input_tokens": usage.input_tokens,
        "cache_read_tokens": usage.cache_read_tokens,
        "cache_write_tokens": usage.cache_write_tokens,
        "cache_write_1h_tokens": usage.cache_write_1h_tokens,
        "output_tokens": usage.output_tokens,
        "reasoning_tokens": usage.reasoning_tokens,
        "request_count": usage.request_count,
        "seats": _ZERO,
        "search_queries": usage.search_queries,
        "images": usage.images,
        "audio_seconds": usage.audio_seconds,
        "credits": _ZERO,
        "cost": cost,
        "currency": "USD",
        "source": Source.ESTIMATED.value,
        "status": str(event.status),  # plain str: drivers adapt Enum members by name
        "tags": event.tags,
        "raw": {
            "usage": event.raw_usage,  # may hold Decimals: the writers encode them as text
            # What re-pricing needs beyond the token columns.
            "pricing": {
                "provider_cost": None if usage.provider_cost is None else str(usage.provider_cost),
                "total_duration_ns": usage.total_duration_ns,
                "search_context_size": usage.search_context_size,
                "usage_found": usage.found,
            },
        },
        "created_at": now,
        "updated_at": now,
    }


_ZERO = Decimal(0)
_FIELDS = [f for f in UsageRecord._meta.concrete_fields if not f.primary_key]
_KEY_FIELDS = [
    RequestKey._meta.get_field(name) for name in ("account", "natural_key", "bucket_start")
]
# Plain ints and strings go to the driver as they are; other types need the backend's adaptation.
_PASS_THROUGH = (models.IntegerField, models.CharField, models.ForeignKey)
_MEMO_TYPES = (models.DecimalField, models.DateTimeField)


def _insert_new(rows: Sequence[dict]) -> list[dict]:
    """Insert the rows whose request keys are new; return those rows (SQLite).

    Claiming the keys in RequestKey first is the one dedupe rule (see RequestKey), as in the
    PostgreSQL statement. The hot path of ingestion, so no model instances: multi-row VALUES
    with values adapted per column type.
    """
    if not rows:
        return []
    claimed = {
        row[0]
        for row in _insert_values(
            RequestKey, _KEY_FIELDS, rows, "ON CONFLICT DO NOTHING RETURNING natural_key"
        )
    }
    new = [row for row in rows if row["natural_key"] in claimed]
    _insert_values(UsageRecord, _FIELDS, new)
    return new


def _insert_values(model, fields, rows: Sequence[dict], suffix: str = "") -> list[tuple]:
    """INSERT rows (dicts by attname) into model's table in chunks; return what `suffix`'s
    RETURNING gives."""
    conn = connections[DEFAULT_DB_ALIAS]  # the wrapper itself, not the thread-local proxy
    table = model._meta.db_table
    columns = ", ".join(conn.ops.quote_name(f.column) for f in fields)
    row_sql = "(" + ", ".join(["%s"] * len(fields)) + ")"
    memo: dict = {}

    def adapter(field):
        if isinstance(field, _PASS_THROUGH):
            return None
        if isinstance(field, models.JSONField):
            return jsontext.dumps  # Decimals as text
        if isinstance(field, _MEMO_TYPES):

            def memoised(value, field=field):
                key = (field.attname, value)
                if key not in memo:
                    memo[key] = field.get_db_prep_save(value, conn)
                return memo[key]

            return memoised
        return lambda value, field=field: field.get_db_prep_save(value, conn)

    plan = [(f.attname, adapter(f)) for f in fields]
    returned: list[tuple] = []
    with conn.cursor() as cursor:
        for i in range(0, len(rows), _CHUNK):
            chunk = rows[i : i + _CHUNK]
            params = [
                row[name] if adapt is None else adapt(row[name])
                for row in chunk
                for name, adapt in plan
            ]
            cursor.execute(
                f"INSERT INTO {table} ({columns}) VALUES {', '.join([row_sql] * len(chunk))} "
                + suffix,
                params,
            )
            if suffix:
                returned.extend(cursor.fetchall())
    return returned


# Columns that are the same for every row of one call: bound once as scalars.
_CALL_CONSTANT = frozenset(
    {
        "account_id",
        "provider_id",
        "ingest_key_id",
        "line_item",
        "description",
        "granularity",
        "seats",
        "credits",
        "currency",
        "source",
        "created_at",
        "updated_at",
    }
)
_PER_EVENT = [f for f in _FIELDS if f.attname not in _CALL_CONSTANT]
_SLOT = {f.attname: f"p{n}" for n, f in enumerate(_FIELDS)}
_JSON_COLUMNS = frozenset(f.attname for f in _PER_EVENT if isinstance(f, models.JSONField))
_NUMBER_COLUMNS = frozenset(
    f.attname for f in _PER_EVENT if isinstance(f, models.IntegerField | models.DecimalField)
)
# What the roll-up reads back from the inserted rows (RETURNING * would ship the raw JSON too).
_ROLLUP_READS = ["natural_key", *ROLLUP_READS]


@cache
def _insert_and_roll_up_sql(alias: str) -> Statement:
    conn = connections[alias]

    def cast(field) -> str:
        return field.db_type(conn).replace("timestamp with time zone", "timestamptz")

    # Plain snake_case column names need no quoting.
    table = UsageRecord._meta.db_table
    columns = ", ".join(f.column for f in _FIELDS)
    values = ", ".join(
        f"%({_SLOT[f.attname]})s::{cast(f)}" if f.attname in _CALL_CONSTANT else f.column
        for f in _FIELDS
    )
    arrays = ", ".join(f"%({_SLOT[f.attname]})s::{cast(f)}[]" for f in _PER_EVENT)
    names = ", ".join(f.column for f in _PER_EVENT)
    returning = ", ".join(dict.fromkeys(_ROLLUP_READS))
    key, account = IngestKey._meta.db_table, ProviderAccount._meta.db_table
    nk = UsageRecord._meta.get_field("natural_key")
    sql = (
        # The ingest key (when given) must still be active, checked in this very statement:
        # its lookup may come from a cache (providers.selectors.ingest_key_lookup).
        # With %(commit)s = 'off', set_config(…, true) lasts until the transaction's end: only
        # ever sent for a statement that is its own transaction (`durable` below).
        "WITH ok AS (SELECT (%(commit)s::text IS NULL OR "
        "set_config('synchronous_commit', %(commit)s, true) > '') AND "
        f"(%(key_id)s::bigint IS NULL OR EXISTS (SELECT 1 FROM {key} k "
        f"JOIN {account} a ON a.id = k.account_id WHERE k.id = %(key_id)s::bigint "
        "AND k.revoked_at IS NULL AND a.is_active)) AS ok), "
        # The keys first (RequestKey: the one dedupe rule), then the records of those new.
        f"keys AS (INSERT INTO {RequestKey._meta.db_table} (account_id, natural_key, "
        f"bucket_start) SELECT %({_SLOT['account_id']})s::bigint, natural_key, bucket_start "
        f"FROM unnest(%({_SLOT['natural_key']})s::{cast(nk)}[], "
        f"%({_SLOT['bucket_start']})s::timestamptz[]) AS k(natural_key, bucket_start) "
        # Nothing before the raw history: its keys are gone (usage.services.history).
        "WHERE (SELECT ok FROM ok) AND bucket_start >= coalesce((SELECT max(before) "
        f"FROM {RawHistoryPrune._meta.db_table}), '-infinity') ORDER BY natural_key "
        "ON CONFLICT DO NOTHING RETURNING natural_key), "
        f"ins AS (INSERT INTO {table} ({columns}) SELECT {values} "
        f"FROM unnest({arrays}) AS x({names}) "
        f"WHERE natural_key IN (SELECT natural_key FROM keys) RETURNING {returning}), "
        # The roll-ups' one definition, adding the rows this statement inserted to each.
        + ", ".join(_roll_up_ctes())
        # Then (in this order, for the locks) the enforced budgets' spend the call counts in.
        + f", counted AS (UPDATE {_budget_spend_table()} s SET spent = s.spent + t.cost "
        "FROM (SELECT sum(cost) AS cost FROM ins) t, "
        "unnest(%(budget_ids)s::bigint[], %(budget_starts)s::date[]) AS b(id, start) "
        "WHERE t.cost IS NOT NULL AND s.budget_id = b.id AND s.period_start = b.start "
        f"AND (SELECT count(*) FROM rolled{len(ROLLUPS) - 1}) >= 0)"
        + " SELECT natural_key FROM ins UNION ALL SELECT NULL FROM ok WHERE NOT ok"
    )
    # Past 4 KB, psycopg would parse the named placeholders on every call: sent as $n instead.
    return Statement.from_named(sql)


def _roll_up_ctes() -> list[str]:
    """One CTE per roll-up adding the rows of `ins`, run in the order of ROLLUPS.

    Every writer locks the roll-ups' rows in that one order, or two writers could each hold
    a row the other waits for. Left to itself the executor runs unreferenced CTEs last to
    first, so each one after the first waits for the one before: its InitPlan counts all the
    earlier one's rows (a few) before it starts.
    """
    ctes = []
    for n, rollup in enumerate(ROLLUPS):
        after = f"WHERE (SELECT count(*) FROM rolled{n - 1}) >= 0" if n else ""
        sql = rollup_upsert_sql(vendor="postgresql", rows="ins", where=after, rollup=rollup)
        ctes.append(f"rolled{n} AS ({sql} RETURNING 1)")  # each waits for the one before
    return ctes


def _insert_and_roll_up_postgresql(
    rows: Sequence[dict],
    key_id: int | None,
    *,
    durable: bool,
    budget_periods: Sequence[tuple[int, date]] = (),
) -> set[str]:
    """Insert new rows and add them onto the roll-up in ONE statement; return inserted keys.

    Each per-event column goes as one array literal and `unnest` zips them back into rows, so
    the statement text is the same for any batch size and is prepared once per connection
    (`fetch_prepared`): thousands of placeholders cost more to bind than to run, and planning
    this statement costs more than running it for a few rows. The literals are built here
    rather than by psycopg, whose list adaptation costs ~20 µs per column even for one row;
    and unlike one JSON document per batch, PostgreSQL reads numbers and times straight from
    them. The insert's RETURNING feeds the roll-up upsert inside the same statement, which is
    atomic on its own: one round trip instead of BEGIN, INSERT, UPSERT and COMMIT.
    """
    first = rows[0]
    params: dict = {_SLOT[name]: first[name] for name in _CALL_CONSTANT}
    for f in _PER_EVENT:
        column = [row[f.attname] for row in rows]
        if f.attname in _JSON_COLUMNS:
            column = [jsontext.dumps(value) for value in column]
        params[_SLOT[f.attname]] = pg_array_literal(column, numbers=f.attname in _NUMBER_COLUMNS)
    params["key_id"] = key_id
    params["budget_ids"] = pg_array_literal([b for b, _ in budget_periods], numbers=True)
    params["budget_starts"] = pg_array_literal([start for _, start in budget_periods])
    # Inside a caller's transaction the setting would cover all of that transaction's writes.
    params["commit"] = None if durable or connection.in_atomic_block else "off"
    sql = _insert_and_roll_up_sql(DEFAULT_DB_ALIAS)
    # Safe to run twice: ON CONFLICT DO NOTHING, and the roll-up adds only the rows this run
    # inserted. (Had a first run committed before its connection died, the retry would call
    # its events duplicates; the stored figures are right either way.)
    inserted = {row[0] for row in fetch_prepared(sql, params, retry_safe=True)}
    if None in inserted:
        raise IngestKeyInactive()
    if inserted:
        # The roll-up changed in the statement above: what rollup_add would do after it. Most
        # calls end in a dictionary lookup here (see alerts_evaluation_request).
        spend_changed(account_ids=[first["account_id"]])
    return inserted


def request_events_record(
    *,
    account: ProviderAccount,
    events: Sequence[RequestEvent],
    book: PriceBook | None = None,
    reasons: dict[str, str] | None = None,
    ingest_key_id: int | None = None,
    key_must_be_active: bool = True,
    durable: bool = True,
    budget_periods: Sequence[tuple[int, date]] = (),
) -> dict[str, str]:
    """Record events for one account. Returns {request_id: "created" | "duplicate" | "rejected"}.

    The single write path for per-request usage (ingestion API and proxy). `ingest_key_id`:
    the key that sent the events, stored on their records (and so in the attribution
    roll-up). Unless `key_must_be_active` is False (the proxy: its call has been made and
    billed by the time it is recorded), nothing is written unless that key is still active
    (IngestKeyInactive), checked in the same statement or transaction as the write. Events
    repeating a request id inside the batch count once (the first wins). An event that cannot
    be stored (a cost out of range) is "rejected", with the reason put in `reasons` when
    given, and never stops the others.

    `budget_periods`: (budget id, period start) of the enforced budgets the proxy checked the
    call against (alerts/enforcement.py); the cost of what is new here is added to their
    BudgetPeriodSpend in the same statement or transaction, so it is counted exactly once and
    an evaluation setting it from the roll-ups (which locks it first) never loses it.

    `durable=False` (PostgreSQL, outside a transaction): the commit does not wait for the WAL
    to reach the disk, or a synchronous standby. The rows are committed and seen by everyone at
    once, as always, but a crash of the database server within ~0.6 s (3 × wal_writer_delay),
    or a failover, may lose them. The proxy's choice, see settings.PROXY_DURABLE_COMMIT.
    Otherwise the server's own synchronous_commit applies.
    """
    book = book or PriceBook()
    now = timezone.now()
    rows, seen = [], set()
    rejected: dict[str, str] = {}
    for event in events:
        if event.request_id in seen:
            continue
        seen.add(event.request_id)
        try:
            rows.append(
                _record_values(
                    account=account, event=event, book=book, now=now, ingest_key_id=ingest_key_id
                )
            )
        except ValueError as exc:
            rejected[event.request_id] = str(exc)
    # One order for every batch: two batches inserting overlapping request ids in different
    # orders would otherwise wait on each other's rows and deadlock on PostgreSQL.
    rows.sort(key=lambda row: row["natural_key"])
    check_key = ingest_key_id if key_must_be_active else None
    if not rows:
        if check_key is not None and not _ingest_key_active(check_key):
            raise IngestKeyInactive()
        inserted: set[str] = set()
    elif connection.vendor == "postgresql":
        # The statement itself skips events before the raw history; here they get a reason.
        inserted = _insert_and_roll_up_postgresql(
            rows, check_key, durable=durable, budget_periods=budget_periods
        )
        _before_raw_history([r for r in rows if r["natural_key"] not in inserted], rejected)
    else:
        with transaction.atomic():
            if check_key is not None and not _ingest_key_active(check_key):
                raise IngestKeyInactive()
            # Read inside the write: SQLite has one writer, so no prune moves it meanwhile.
            rows = _before_raw_history(rows, rejected)
            new = _insert_new(rows)
            inserted = {r["natural_key"] for r in new}
            # rollup_add reads attributes; a namespace is all it needs, no model instances.
            rollup_add([SimpleNamespace(**r) for r in new])
            _budget_spend_add(budget_periods, [r["cost"] for r in new])
    if reasons is not None:
        reasons.update(rejected)
    return {
        e.request_id: (
            "rejected"
            if e.request_id in rejected
            else "created"
            if f"req:{e.request_id}" in inserted
            else "duplicate"
        )
        for e in events
    }


def _before_raw_history(rows: list[dict], rejected: dict[str, str]) -> list[dict]:
    """Put the rows from before the raw history into `rejected`; return the others."""
    start = history_refusal(times=[row["bucket_start"] for row in rows])
    if start is None:
        return rows
    for row in rows:
        if row["bucket_start"] < start:
            rejected[row["request_id"]] = (
                f"occurred_at: before {start:%Y-%m-%d}, where the raw history now starts "
                "(RAW_RETENTION_DAYS); it can no longer be checked for a duplicate"
            )
    return [row for row in rows if row["bucket_start"] >= start]


@cache
def _budget_spend_table() -> str:
    # By name: budgets live in the alerts app, which builds on this one.
    return apps.get_model("alerts", "BudgetPeriodSpend")._meta.db_table


def budget_periods_where(periods: Sequence[tuple[int, date]]) -> tuple[str, list]:
    """SQL matching the BudgetPeriodSpend rows of these (budget, period start) pairs, and its
    parameters (alerts/enforcement.py reads them with it). Hand-written, as on every hot path
    here: compiling the ORM's query costs more than the database spends answering."""
    sql = " OR ".join(["(budget_id = %s AND period_start = %s)"] * len(periods))
    adapt = connection.ops.adapt_datefield_value
    return f"({sql})", [v for budget_id, start in periods for v in (budget_id, adapt(start))]


def _budget_spend_add(periods: Sequence[tuple[int, date]], costs: Sequence) -> None:
    """SQLite: what the PostgreSQL statement's `counted` does, inside the caller's transaction."""
    priced = [cost for cost in costs if cost is not None]
    if not periods or not priced:
        return
    where, params = budget_periods_where(periods)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {_budget_spend_table()} SET spent = spent + %s WHERE {where}",
            [sum(priced, Decimal(0)), *params],
        )


class IngestKeyInactive(Exception):
    """The ingest key was revoked or its account deactivated; nothing was written."""


def _ingest_key_active(key_id: int) -> bool:
    return IngestKey.objects.filter(
        pk=key_id, revoked_at__isnull=True, account__is_active=True
    ).exists()
