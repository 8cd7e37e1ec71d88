"""Raw history at scale: 100M per-request records partitioned by month, on PostgreSQL.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/x .venv/bin/python bench/bench_history.py
    ... --quick                      (2M events, 100k of the timed user's in 90 days: minutes)
    ... (no flag)                    (100M events, 1M of the timed user's in 90 days: ~30 min)
    ... --total N --events M         (any size)
    ... --keep                       (keep the database to re-time it)
    ... --rebuild                    (drop an existing one and build again)
    ... --reuse [--steps dashboard,ingest,drop]   (re-time a kept database, no rebuild)

Creates its own database (`ct_history_bench`, or --database) on the server DATABASE_URL points
at, migrates it (usage_usagerecord partitioned by source, estimated records by month) and makes
the users, workspaces and accounts of bench_dashboard.py. Then, before loading anything big, it
loads a probe of 1M events to measure the bytes an event takes (record, its two indexes, its
RequestKey row and key) and stops if the projection for --total exceeds --max-gb or the free
disk (keeping 10 GB).

N events are spread evenly over 13 months (the 12 before this one, and this one up to now)
across every user's accounts; the timed user (bench_dashboard's "user 0", 5 accounts) gets
--events of them in the last 90 days, and the same rate before. Tags and keys have
bench_dashboard's shape. Each month is loaded in SQL (generate_series) into a standalone table
with the parent's columns and CHECKs plus a CHECK of the month's range, indexed, vacuumed,
then ATTACHed as that month's partition: PostgreSQL sees the CHECK imply the partition bound
and skips the validation scan, and takes the indexes as the partitioned indexes' own.
--jobs connections (2) load different months at once. usage_requestkey gets every event's key,
its primary key built after the load. The roll-ups are built with the writers' own statement
(usage.services.rollup.rollup_upsert_sql), official rows first, then month by month.

Then it times, printing each figure:
1. the dashboard's server time, p50/p95 per page (bench_dashboard.measure: this month, the last
   90 days, each group-by, ...), for the timed user;
2. ingestion through usage.services.requests.request_events_record, one account (another
   user's, so the timed user's figures stay as built), into this month's partition: batches
   of 1,000 and of 100 (--ingest events each, random request ids, so every key lands at a
   random place of the big key index);
3. dropping the oldest month: RAW_RETENTION_DAYS set so that exactly that month goes,
   usage.services.history.raw_history_prune timed as a whole, and the partition drop on its
   own (the result's drop_seconds), the rest being the deletion of the month's request keys.

Targets (issue 14): dashboard p95 <= 50 ms for the user's 90-day view; ingestion >= 10,000
events/s in batches; dropping a month <= 1 s. Building 100M took 25 min here (2 cores):
build once with --keep, then re-time with --reuse (--steps picks the measurements; a drop
removes a month for good, so each --reuse drops the next oldest).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import shutil
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from urllib.parse import urlsplit

from bench_dashboard import (
    DAYS,
    MODELS,
    PLAIN_STORAGES,
    _admin,
    _db_url,
    _step,
    accounts_make,
    measure,
    official_lines_insert,
    results_print,
)
from benchlib import django_environment

BENCH_DB = "ct_history_bench"
MONTHS = 13  # this month and the 12 before it
SLOTS = 100_000  # event g is the timed user's when g * 7919 % SLOTS < its share of them
PROBE = 1_000_000
KEEP_FREE = 10 * 1024**3  # bytes of disk the build never eats into
STEPS = ("dashboard", "ingest", "drop")
PARENT = "usage_usagerecord_estimated"
# Session settings of the loading connections: sorts and hashes in memory, one core each.
LOADER_SETTINGS = (
    "SET work_mem = '512MB'",
    "SET maintenance_work_mem = '2GB'",
    "SET max_parallel_maintenance_workers = 0",
    "SET synchronous_commit = off",
)


def _month_add(month: date, n: int) -> date:
    index = month.year * 12 + month.month - 1 + n
    return date(index // 12, index % 12 + 1, 1)


def _midnight(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time(), tzinfo=UTC)


@dataclasses.dataclass
class Plan:
    """Where each event goes: event g (1..total) happens at start + (g - 0.5) * step."""

    now: datetime
    total: int
    events: int  # the timed user's in the last DAYS days
    wide: bool
    months: list[date]
    share: int  # of SLOTS
    target_ids: list[int]
    target_providers: list[int]
    target_keys: list[int]
    other_ids: list[int]
    other_providers: list[int]
    shape: tuple[int, int, int]  # end users, projects, features

    @property
    def start(self) -> datetime:
        return _midnight(self.months[0])

    @property
    def step(self) -> float:
        return (self.now - self.start).total_seconds() / self.total

    def first_event(self, month: date) -> int:
        """The first g whose time is in `month` or later."""
        seconds = (_midnight(month) - self.start).total_seconds()
        return max(1, math.ceil(seconds / self.step + 0.5))

    def events_of(self, month: date) -> tuple[int, int]:
        """(first g, last g) of the month."""
        i = self.months.index(month)
        last = self.total if i == len(self.months) - 1 else self.first_event(self.months[i + 1]) - 1
        return self.first_event(month), last


def plan_make(*, now: datetime, total: int, events: int, wide: bool, shape, accounts) -> Plan:
    target, other, key_of = accounts
    this_month = now.date().replace(day=1)
    months = [_month_add(this_month, n) for n in range(1 - MONTHS, 1)]
    span_days = (now - _midnight(months[0])).total_seconds() / 86400
    in_window = total * DAYS / span_days
    share = round(SLOTS * events / in_window)
    if share > SLOTS:
        raise SystemExit(
            f"{total:,} events put only {in_window:,.0f} in the last {DAYS} days: "
            f"too few for {events:,} of the timed user's. Raise --total or lower --events."
        )
    return Plan(
        now=now,
        total=total,
        events=events,
        wide=wide,
        months=months,
        share=share,
        target_ids=[a.pk for a in target],
        target_providers=[a.provider_id for a in target],
        target_keys=[key_of[a.pk] for a in target],
        other_ids=[a.pk for a in other],
        other_providers=[a.provider_id for a in other],
        shape=shape,
    )


def _array(values: list[int]) -> str:
    return "ARRAY[" + ",".join(str(v) for v in values) + "]::bigint[]"


def events_insert_sql(plan: Plan, table: str, first: int, last: int, month: date) -> str:
    """INSERT … SELECT of events first..last (all in `month`) into `table`.

    Narrow rows (the default): request ids 'r<g>', raw '{}'. --wide: 38-character request ids
    like OpenAI's and the raw usage/pricing JSON the ingestion API stores.
    """
    u, p, f = plan.shape
    models = "ARRAY[" + ",".join(f"'{m}'" for m in MODELS) + "]"
    month_start, month_end = _midnight(month), _midnight(_month_add(month, 1))
    if plan.wide:
        rid = "'chatcmpl-' || left(md5(g::text), 29)"
        raw = (
            "jsonb_build_object('usage', jsonb_build_object('prompt_tokens', it + g % 500, "
            "'completion_tokens', ot, 'total_tokens', it + g % 500 + ot, "
            "'prompt_tokens_details', jsonb_build_object('cached_tokens', g % 500)), "
            '\'pricing\', \'{"provider_cost": null, "total_duration_ns": 0, '
            '"search_context_size": null, "usage_found": true}\'::jsonb)'
        )
    else:
        rid, raw = "'r' || g", "'{}'::jsonb"
    nt, no = len(plan.target_ids), len(plan.other_ids)
    # One request each; 1 in 50 unpriced, 1 in 200 failed. End user u = g mod U works in
    # project u mod P and uses 3 features; 1 in 10 untagged and without a key (as in
    # bench_dashboard). Times are clamped into the month against float rounding.
    return f"""
        INSERT INTO {table} (id, account_id, provider_id, ingest_key_id, natural_key,
            request_id, model, line_item, description, bucket_start, granularity,
            input_tokens, cache_read_tokens, cache_write_tokens, cache_write_1h_tokens,
            output_tokens, reasoning_tokens, request_count, seats, search_queries, images,
            audio_seconds, credits, cost, currency, source, status, tags, raw, created_at,
            updated_at)
        SELECT g,
            CASE WHEN mine THEN ({_array(plan.target_ids)})[1 + g % {nt}]
                ELSE ({_array(plan.other_ids)})[1 + g % {no}] END,
            CASE WHEN mine THEN ({_array(plan.target_providers)})[1 + g % {nt}]
                ELSE ({_array(plan.other_providers)})[1 + g % {no}] END,
            CASE WHEN mine AND g % 10 <> 0
                THEN ({_array(plan.target_keys)})[1 + g % {nt}] END,
            'req:' || rid, rid, ({models})[1 + g % {len(MODELS)}], '', '', ts, 'event',
            it, g % 500, 0, 0, ot, 0, 1, 0, 0, 0, 0, 0,
            CASE WHEN g % 50 = 0 THEN NULL ELSE it * 0.0000025 END, 'USD', 'estimated',
            CASE WHEN g % 200 = 0 THEN 'failed' ELSE 'ok' END,
            CASE WHEN g % 10 = 0 THEN '{{}}'::jsonb ELSE jsonb_build_object(
                'project', 'project-' || (g % {u}) % {p},
                'user', 'user-' || g % {u},
                'feature', 'feature-' || ((g % {u}) + (g / {u}) % 3) % {f}) END,
            {raw}, ts, ts
        FROM (
            SELECT g, g * 7919 % {SLOTS} < {plan.share} AS mine, {rid} AS rid,
                200 + g % 3000 AS it, 50 + g % 800 AS ot,
                greatest('{month_start.isoformat()}'::timestamptz,
                    least('{month_end.isoformat()}'::timestamptz - interval '1 microsecond',
                        to_timestamp({plan.start.timestamp()} + (g - 0.5) * {plan.step!r})))
                    AS ts
            FROM generate_series({first}::bigint, {last}::bigint) g
        ) e
    """


class Loader:
    """One connection of its own that loads, indexes and attaches whole months."""

    def __init__(self, url: str):
        import psycopg

        self.conn = psycopg.connect(url, autocommit=True)
        for sql in LOADER_SETTINGS:
            self.conn.execute(sql)

    def run(self, sql: str) -> float:
        started = time.perf_counter()
        self.conn.execute(sql)
        return time.perf_counter() - started

    def one(self, sql: str, params=()):
        return self.conn.execute(sql, params).fetchone()[0]


_loaders = threading.local()


def month_load(plan: Plan, url: str, month: date, name: str) -> int:
    """Load `month` into a new table `name`, with its keys; index it; attach it."""
    if not hasattr(_loaders, "loader"):
        _loaders.loader = Loader(url)
    db = _loaders.loader
    first, last = plan.events_of(month)
    lo, hi = _midnight(month).isoformat(), _midnight(_month_add(month, 1)).isoformat()
    times = {}
    # The parent's columns, defaults and CHECKs (ATTACH requires them), and the month's range:
    # a CHECK that implies the partition's bound, so ATTACH needs no scan to validate it.
    db.run(
        f"CREATE TABLE {name} (LIKE usage_usagerecord INCLUDING DEFAULTS INCLUDING CONSTRAINTS, "
        f"CONSTRAINT bench_month CHECK (source = 'estimated' AND bucket_start >= '{lo}' "
        f"AND bucket_start < '{hi}'))"
    )
    times["events"] = db.run(events_insert_sql(plan, name, first, last, month))
    times["keys"] = db.run(
        "INSERT INTO usage_requestkey (account_id, natural_key, bucket_start) "
        f"SELECT account_id, natural_key, bucket_start FROM {name}"
    )
    # The indexes the partitioned parent has: ATTACH takes them as its partitions' own.
    times["indexes"] = db.run(f"ALTER TABLE {name} ADD PRIMARY KEY (id, source, bucket_start)")
    times["indexes"] += db.run(f"CREATE INDEX ON {name} (account_id, source, bucket_start)")
    times["vacuum"] = db.run(f"VACUUM (ANALYZE) {name}")
    times["attach"] = db.run(
        f"ALTER TABLE {PARENT} ATTACH PARTITION {name} FOR VALUES FROM ('{lo}') TO ('{hi}')"
    )
    db.run(f"ALTER TABLE {name} DROP CONSTRAINT bench_month")
    rows = last - first + 1
    print(
        f"  {month:%Y-%m} {name}: {rows:,} events; "
        + ", ".join(f"{k} {v:.1f} s" for k, v in times.items()),
        flush=True,
    )
    return rows


def rollups_of_month(url: str, table: str) -> float:
    from usage.services.rollup import ROLLUPS, rollup_upsert_sql

    if not hasattr(_loaders, "loader"):
        _loaders.loader = Loader(url)
    seconds = 0.0
    for rollup in ROLLUPS:
        sql = rollup_upsert_sql(vendor="postgresql", rows=table, rollup=rollup)
        seconds += _loaders.loader.run(sql)
    return seconds


def _gb(n: float) -> str:
    return f"{n / 1024**3:.2f} GB"


_data_directory: list[str] = []


def disk_free() -> int | None:
    """Free bytes where the database server keeps its data, when that is this machine."""
    from django.db import connection

    host = urlsplit(os.environ["DATABASE_URL"]).hostname or "localhost"
    if host not in ("127.0.0.1", "localhost", "::1"):
        return None
    try:
        if not _data_directory:
            with connection.cursor() as cursor:
                cursor.execute("SHOW data_directory")
                _data_directory.append(cursor.fetchone()[0])
        return shutil.disk_usage(_data_directory[0]).free
    except Exception:  # not a superuser, or another machine's path: no guard
        return None


def probe(plan: Plan, url: str, max_gb: float) -> float:
    """Bytes per event of 1M events (record, its indexes, key row and key index); stop
    before the build when --total of them would not fit."""
    month = plan.months[-2]
    first, last = plan.events_of(month)
    last = min(last, first + PROBE - 1)
    db = Loader(url)
    try:
        db.run(
            "CREATE TABLE bench_probe (LIKE usage_usagerecord INCLUDING DEFAULTS "
            "INCLUDING CONSTRAINTS)"
        )
        db.run(events_insert_sql(plan, "bench_probe", first, last, month))
        db.run("ALTER TABLE bench_probe ADD PRIMARY KEY (id, source, bucket_start)")
        db.run("CREATE INDEX ON bench_probe (account_id, source, bucket_start)")
        db.run("CREATE TABLE bench_probe_keys (LIKE usage_requestkey)")
        db.run(
            "INSERT INTO bench_probe_keys SELECT account_id, natural_key, bucket_start "
            "FROM bench_probe"
        )
        db.run("ALTER TABLE bench_probe_keys ADD PRIMARY KEY (account_id, natural_key)")
        db.run("VACUUM bench_probe, bench_probe_keys")
        sizes = {
            t: db.conn.execute(f"SELECT pg_relation_size('{t}'), pg_indexes_size('{t}')").fetchone()
            for t in ("bench_probe", "bench_probe_keys")
        }
    finally:
        db.run("DROP TABLE IF EXISTS bench_probe, bench_probe_keys")
        db.conn.close()
    rows = last - first + 1
    (rec, rec_idx), (key, key_idx) = sizes["bench_probe"], sizes["bench_probe_keys"]
    per_event = (rec + rec_idx + key + key_idx) / rows
    projected = per_event * plan.total
    print(
        f"  probe of {rows:,} events ({'wide' if plan.wide else 'narrow'} rows): "
        f"{per_event:.0f} bytes an event = record {rec / rows:.0f} + its indexes "
        f"{rec_idx / rows:.0f} + key {key / rows:.0f} + key index {key_idx / rows:.0f}; "
        f"{plan.total:,} events: {_gb(projected)} (without roll-ups)",
        flush=True,
    )
    free = disk_free()
    if projected > max_gb * 1024**3:
        raise SystemExit(f"{_gb(projected)} is over --max-gb {max_gb}: narrow the rows")
    # The build also writes WAL (up to max_wal_size), the roll-ups and sort files.
    if free is not None and projected * 1.15 > free - KEEP_FREE:
        raise SystemExit(f"only {_gb(free)} free on the server's disk: not enough")
    return per_event


def sizes_print(cursor) -> None:
    cursor.execute(
        "SELECT count(*), coalesce(sum(pg_relation_size(c.oid)), 0), "
        "coalesce(sum(pg_indexes_size(c.oid)), 0), coalesce(sum(c.reltuples), 0) "
        "FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        f"WHERE i.inhparent = '{PARENT}'::regclass AND c.relname <> '{PARENT}_default'"
    )
    parts, heap, index, rows = cursor.fetchone()
    print(
        f"  estimated records: {parts} monthly partitions (some ahead, empty), "
        f"~{rows:,.0f} rows, heap {_gb(heap)} + indexes {_gb(index)}"
    )
    for table in ("usage_usagerecord_settled", "usage_requestkey", "usage_dailyusage",
                  "usage_dailyattribution"):  # fmt: skip
        cursor.execute(
            f"SELECT pg_relation_size('{table}'), pg_indexes_size('{table}'), reltuples "
            f"FROM pg_class WHERE oid = '{table}'::regclass"
        )
        heap, index, rows = cursor.fetchone()
        print(f"  {table}: ~{rows:,.0f} rows, heap {_gb(heap)} + indexes {_gb(index)}")
    cursor.execute("SELECT pg_database_size(current_database())")
    line = f"  database: {_gb(cursor.fetchone()[0])}"
    free = disk_free()
    print(line + ("" if free is None else f"; {_gb(free)} free on the server's disk"), flush=True)


def build(args) -> int:
    """Fill the bench database; return the timed user's id."""
    from django.core.management import call_command
    from django.db import connection

    from usage.services.history import month_partition_name, partitions_create_ahead
    from usage.services.rollup import ROLLUPS, rollup_upsert_sql

    url = os.environ["DATABASE_URL"]
    begun = t = time.perf_counter()
    call_command("migrate", verbosity=0)
    t = _step("migrate", t)
    people, target, other, key_of, official_ids = accounts_make(args.users)
    t = _step(f"{args.users} users, {len(target) + len(other)} accounts", t)
    now = datetime.now(UTC)
    plan = plan_make(
        now=now,
        total=args.total,
        events=args.events,
        wide=args.wide,
        shape=(args.end_users, args.projects, args.features),
        accounts=(target, other, key_of),
    )
    with connection.cursor() as cur:
        cur.execute("SELECT relkind FROM pg_class WHERE oid = 'usage_usagerecord'::regclass")
        if cur.fetchone()[0] != "p":
            raise SystemExit("usage_usagerecord is not partitioned: this needs the partitioning")
    if not args.no_probe:
        probe(plan, url, args.max_gb)
        t = _step("probe", t)
    names = {m: month_partition_name(m) for m in plan.months}
    with connection.cursor() as cur:
        for name in names.values():  # made empty by the migration: replaced by loaded ones
            cur.execute("SELECT to_regclass(%s) IS NOT NULL", [name])
            if cur.fetchone()[0]:
                cur.execute(f"SELECT EXISTS (SELECT 1 FROM {name})")
                assert not cur.fetchone()[0], f"{name} is not empty"
                cur.execute(f"DROP TABLE {name}")
        # The key table is loaded without its primary key, which is built once at the end.
        cur.execute(
            "SELECT conname FROM pg_constraint WHERE conrelid = 'usage_requestkey'::regclass "
            "AND contype = 'p'"
        )
        key_pk = cur.fetchone()[0]
        cur.execute(f"ALTER TABLE usage_requestkey DROP CONSTRAINT {key_pk}")
    print(
        f"  {plan.total:,} events from {plan.start:%Y-%m-%d} to now; the timed user has "
        f"{plan.share / SLOTS:.2%} of them ({args.events:,} in the last {DAYS} days)",
        flush=True,
    )
    stop = threading.Event()

    def load(month: date) -> int:
        if stop.is_set():
            return 0
        free = disk_free()
        if free is not None and free < KEEP_FREE * 1.5:
            stop.set()
            raise SystemExit(f"only {_gb(free)} left on the server's disk: stopped")
        try:
            return month_load(plan, url, month, names[month])
        except BaseException:
            stop.set()
            raise

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        loaded = sum(pool.map(load, plan.months))
    t = _step(f"{loaded:,} events in {len(plan.months)} months, {args.jobs} connections", t)
    db = Loader(url)
    db.run("SET maintenance_work_mem = '4GB'")
    db.run(f"SET max_parallel_maintenance_workers = {args.jobs}")
    db.run(f"ALTER TABLE usage_requestkey ADD CONSTRAINT {key_pk} "
           "PRIMARY KEY (account_id, natural_key)")  # fmt: skip
    t = _step("usage_requestkey primary key", t)
    db.run("VACUUM (ANALYZE) usage_requestkey")
    t = _step("VACUUM usage_requestkey", t)
    partitions_create_ahead(now=now)
    db.run("SELECT setval(pg_get_serial_sequence('usage_usagerecord', 'id'), "
           f"{plan.total + 1})")  # fmt: skip
    with connection.cursor() as cur:
        official_lines_insert(cur, official_ids)
        # Official rows first: estimates are born superseded where official figures exist.
        for rollup in ROLLUPS:
            cur.execute(
                rollup_upsert_sql(
                    vendor="postgresql",
                    rows="usage_usagerecord",
                    where="WHERE source = 'official'",
                    rollup=rollup,
                )  # fmt: skip
            )
    t = _step("official daily lines and their roll-ups", t)

    def roll_up(month: date) -> None:
        seconds = rollups_of_month(url, names[month])
        print(f"  {month:%Y-%m} roll-ups: {seconds:.1f} s", flush=True)

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        list(pool.map(roll_up, plan.months))
    t = _step(
        "daily and attribution roll-ups (the writers' INSERT ... SELECT ... GROUP BY), "
        "month by month",
        t,
    )
    db.run("VACUUM (ANALYZE) usage_dailyusage, usage_dailyattribution")
    db.run("ANALYZE usage_usagerecord")  # autovacuum never analyzes a partitioned parent
    db.conn.close()
    t = _step("VACUUM and ANALYZE the roll-ups, ANALYZE the records' parent", t)
    seconds = time.perf_counter() - begun
    with connection.cursor() as cur:
        cur.execute(
            "CREATE TABLE bench_history_meta (built_at timestamptz, total bigint, events "
            "bigint, user_id bigint, wide boolean, build_seconds float)"
        )
        cur.execute(
            "INSERT INTO bench_history_meta VALUES (%s, %s, %s, %s, %s, %s)",
            [now, plan.total, args.events, people[0].pk, args.wide, seconds],
        )
    print(f"  build: {seconds / 60:.1f} min", flush=True)
    return people[0].pk


def ingestion_time(events: int) -> None:
    """events/s of request_events_record, one account, batches of 1,000 and of 100."""
    from decimal import Decimal

    from django.utils import timezone

    from providers.models import ProviderAccount
    from usage.extraction.parsing import RequestUsage
    from usage.models import Price
    from usage.services.prices import EPOCH, PriceBook
    from usage.services.requests import RequestEvent, request_events_record

    # Another user's account (bench1's OpenAI): the timed user's figures stay as built.
    account = (
        ProviderAccount.objects.filter(
            workspace__personal_for__username="bench1", provider__slug="openai"
        )
        .select_related("provider")
        .get()
    )
    if not Price.objects.filter(provider=account.provider, model="gpt-4o-mini").exists():
        per_m = Decimal("0.000001")
        Price.objects.create(provider=account.provider, model="gpt-4o-mini", valid_from=EPOCH,
                             input_per_token=Decimal("0.15") * per_m,
                             cache_read_per_token=Decimal("0.075") * per_m,
                             output_per_token=Decimal("0.60") * per_m)  # fmt: skip
    now = timezone.now()
    month_start = _midnight(now.date().replace(day=1))
    seconds_in = max(1, int((now - month_start).total_seconds()))

    def batch(size: int, n: int) -> list[RequestEvent]:
        return [
            RequestEvent(
                request_id=f"chatcmpl-{uuid.uuid4().hex[:29]}",  # at a random place of the keys
                usage=RequestUsage(
                    model="gpt-4o-mini",
                    input_tokens=1200 + i % 500,
                    cache_read_tokens=512 * (i % 2),
                    output_tokens=300 + i % 200,
                    found=True,
                ),  # fmt: skip
                occurred_at=now - timedelta(seconds=(n * size + i) * 7919 % seconds_in),
                tags={"project": "bench", "feature": f"f{i % 5}"},
            )
            for i in range(size)
        ]

    book = PriceBook()
    request_events_record(account=account, events=batch(100, 0), book=book)  # warm-up
    for size in (1000, 100):
        batches = [batch(size, n) for n in range(max(1, events // size))]
        started = time.perf_counter()
        for events_of_batch in batches:
            outcome = request_events_record(account=account, events=events_of_batch, book=book)
            assert all(v == "created" for v in outcome.values()), outcome
        elapsed = time.perf_counter() - started
        count = len(batches) * size
        print(
            f"  batches of {size:,}: {count:,} events in {elapsed:.1f} s = "
            f"{count / elapsed:,.0f} events/s ({elapsed / len(batches) * 1000:.1f} ms a batch)",
            flush=True,
        )


def drop_time(cursor) -> None:
    """Drop the oldest month through raw_history_prune; time it."""
    from django.test.utils import override_settings

    from usage.services.history import month_partition_name, raw_history_prune

    this_month = datetime.now(UTC).date().replace(day=1)
    oldest = None
    for n in range(-36, 1):
        month = _month_add(this_month, n)
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [month_partition_name(month)])
        if cursor.fetchone()[0]:
            oldest = month
            break
    if oldest is None:
        print("  no monthly partition to drop")
        return
    name = month_partition_name(oldest)
    end = _midnight(_month_add(oldest, 1))
    now = datetime.now(UTC)
    # Removes records before now - days: the oldest month's end is 3+ days before that, the
    # next month's end ~25 days after.
    days = (now - end).days - 3
    if days < 35:
        print(f"  {name} ends {end:%Y-%m-%d}: too recent to drop with RAW_RETENTION_DAYS >= 35")
        return
    cursor.execute(
        f"SELECT reltuples, pg_total_relation_size('{name}') FROM pg_class "
        f"WHERE oid = '{name}'::regclass"
    )
    rows, size = cursor.fetchone()
    cursor.execute("SELECT count(*) FROM usage_requestkey WHERE bucket_start < %s", [end])
    keys = cursor.fetchone()[0]
    with override_settings(RAW_RETENTION_DAYS=days):
        started = time.perf_counter()
        result = raw_history_prune()
        elapsed = time.perf_counter() - started
    fields = dataclasses.asdict(result) if dataclasses.is_dataclass(result) else vars(result)
    drop = fields.get("drop_seconds")
    print(
        f"  {name} (~{rows:,.0f} records, {_gb(size)}; {keys:,} request keys before "
        f"{end:%Y-%m-%d}), RAW_RETENTION_DAYS={days}: raw_history_prune {elapsed:.2f} s"
        + (
            ""
            if drop is None
            else f"; the partition drop {drop * 1000:.0f} ms, the rest (request keys) "
            f"{elapsed - drop:.1f} s"
        ),
        flush=True,
    )
    print(f"  result: {fields}")
    cursor.execute("SELECT to_regclass(%s) IS NULL", [name])
    assert cursor.fetchone()[0], f"{name} is still there"
    cursor.execute("SELECT count(*) FROM usage_requestkey WHERE bucket_start < %s", [end])
    print(f"  request keys before {end:%Y-%m-%d} left: {cursor.fetchone()[0]:,}")


def _exists(base: str, name: str) -> bool:
    import psycopg

    with psycopg.connect(_db_url(base, "postgres"), autocommit=True) as conn:
        return (
            conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
            is not None
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--total", type=int, default=100_000_000, help="events in the database")
    parser.add_argument("--events", type=int, default=1_000_000,
                        help=f"events of the timed user in the last {DAYS} days")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="2M events, 100k of the user's")
    parser.add_argument("--wide", action="store_true",
                        help="38-character request ids, the raw JSON ingestion stores")  # fmt: skip
    parser.add_argument("--projects", type=int, default=20, help="distinct project tags")
    parser.add_argument("--end-users", type=int, default=200, help="distinct user tags")
    parser.add_argument("--features", type=int, default=10, help="distinct feature tags")
    parser.add_argument("--users", type=int, default=100, help="users sharing the database")
    parser.add_argument("--jobs", type=int, default=2, help="connections loading at once")
    parser.add_argument("--max-gb", type=float, default=55, help="largest projected size")
    parser.add_argument("--no-probe", action="store_true", help="skip the size probe")
    parser.add_argument("--requests", type=int, default=200, help="timed requests per page")
    parser.add_argument("--ingest", type=int, default=100_000, help="events per batch size")
    parser.add_argument(
        "--steps", default=",".join(STEPS), help="what to time, of: " + ",".join(STEPS)
    )
    parser.add_argument("--verbose", action="store_true", help="print the slowest queries")
    parser.add_argument("--database", default=BENCH_DB, help="name of the bench database")
    parser.add_argument("--reuse", action="store_true", help="time an existing bench database")
    parser.add_argument("--keep", action="store_true", help="keep the bench database")
    parser.add_argument("--rebuild", action="store_true", help="drop an existing one and build")
    args = parser.parse_args()
    if args.quick:
        args.total, args.events = 2_000_000, 100_000
    steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    if set(steps) - set(STEPS) or args.users < 2 or args.jobs < 1:
        parser.error(f"--steps takes {','.join(STEPS)}; --users >= 2, --jobs >= 1")
    base = os.environ.get("DATABASE_URL", "")
    if not base.startswith(("postgres://", "postgresql://")):
        print("Set DATABASE_URL to a PostgreSQL server (its database name is ignored).")
        return 2
    os.environ["DATABASE_URL"] = _db_url(base, args.database)
    django_environment()
    os.environ.setdefault("ALLOWED_HOSTS", "testserver")
    os.environ["DEBUG"] = "false"

    if not (args.reuse or args.rebuild) and _exists(base, args.database):
        print(f"{args.database} exists (a build takes long): --reuse to re-time it, --rebuild to "
              "drop it and build again, or --database another name.")  # fmt: skip
        return 2
    if not args.reuse:
        _admin(base, f"DROP DATABASE IF EXISTS {args.database} WITH (FORCE)")
        _admin(base, f"CREATE DATABASE {args.database}")
    try:
        import django

        django.setup()
        from django.db import connection
        from django.test.utils import override_settings

        print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load average {os.getloadavg()}")
        if args.reuse:
            with connection.cursor() as cur:
                cur.execute("SELECT built_at, total, events, user_id, wide, build_seconds "
                            "FROM bench_history_meta")  # fmt: skip
                built_at, total, events, user_id, wide, seconds = cur.fetchone()
            print(f"Reusing {args.database}: built {built_at:%Y-%m-%d %H:%M} in "
                  f"{seconds / 60:.1f} min, {total:,} events ({'wide' if wide else 'narrow'}), "
                  f"{events:,} timed")  # fmt: skip
        else:
            print(f"Building {args.database}: {args.total:,} events, {args.events:,} timed")
            user_id = build(args)
        with connection.cursor() as cur:
            sizes_print(cur)
            cur.execute(
                "SELECT coalesce(sum(d.record_count), 0) FROM usage_dailyusage d "
                "JOIN providers_provideraccount a ON a.id = d.account_id "
                "JOIN accounts_workspace w ON w.id = a.workspace_id "
                "WHERE w.personal_for_id = %s AND d.source = 'estimated' AND d.day > %s",
                [user_id, datetime.now(UTC).date() - timedelta(days=DAYS)],
            )
            print(f"  the timed user's events in the last {DAYS} days: {cur.fetchone()[0]:,}")
        if "dashboard" in steps:
            print(f"\nDashboard, load average {os.getloadavg()}:", flush=True)
            with override_settings(STORAGES=PLAIN_STORAGES):
                results = measure(user_id, args.requests, args.verbose)
            results_print(results, args.requests)
        if "ingest" in steps:
            print(f"\nIngestion into this month, load average {os.getloadavg()}:", flush=True)
            ingestion_time(args.ingest)
        if "drop" in steps:
            print(f"\nDropping the oldest month, load average {os.getloadavg()}:", flush=True)
            with connection.cursor() as cur:
                drop_time(cur)
                sizes_print(cur)
        connection.close()
    finally:
        if not (args.keep or args.reuse):
            _admin(base, f"DROP DATABASE IF EXISTS {args.database} WITH (FORCE)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
