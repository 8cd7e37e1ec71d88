"""Dashboard server time for a user with many usage events, on PostgreSQL.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/x .venv/bin/python bench/bench_dashboard.py
    ... --full                       (1M events of the timed user in a database of 10M)
    ... (no flag)                    (100k in 1M: a quick run, a few minutes)
    ... --events N --total M         (any size)

Creates its own database (`ct_insight_bench`, or --database) on the server DATABASE_URL points
at (dropped at the end unless --keep), fills it in SQL (generate_series; Django would take
hours for 10M rows), builds both roll-ups (daily, attribution) from the records with the
statement every writer uses (usage.services.rollup.rollup_upsert_sql), then times the
dashboard view through django.test.Client, logged in, and prints p50/p95 per page. The target
is p95 <= 50 ms for a user with 1M events in a database of 10M, also grouped by tag, key or
member over 90 days: the dashboard reads only the roll-ups.

Events carry tags with a realistic shape: --end-users end users (default 200), each in one of
--projects projects (20) and using 3 of --features features (10); one event in 10 has no tags
and no key. Each of the timed user's 5 accounts has one ingest key (5 keys, made by 3 members
and one by nobody recorded) that writes its tagged events.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from benchlib import django_environment

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BENCH_DB = "ct_insight_bench"
DAYS = 90
MODELS = ["gpt-4o", "gpt-4o-mini", "o3", "claude-sonnet-4-5", "claude-haiku-4-5",
          "llama-3.3-70b", "sonar", "llama3.2"]  # fmt: skip
# Per user: (provider slug, source of its events); official accounts also get daily lines.
ACCOUNTS = [("openai", True), ("anthropic", True), ("groq", False), ("perplexity", False),
            ("ollama", False)]  # fmt: skip


def _db_url(base: str, name: str) -> str:
    parts = urlsplit(base)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def _admin(base: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(_db_url(base, "postgres"), autocommit=True) as conn:
        conn.execute(sql)


def _step(label: str, started: float) -> float:
    now = time.perf_counter()
    print(f"  {label}: {now - started:.1f} s", flush=True)
    return now


def build(events: int, total: int, users: int, shape: argparse.Namespace) -> int:
    """Fill the bench database; return the target user's id."""
    from django.core.management import call_command
    from django.db import connection

    from accounts.models import User
    from accounts.services import workspace_personal_create
    from providers.models import IngestKey, Provider, ProviderAccount
    from usage.services.history import partitions_ensure
    from usage.services.rollup import DAILY_ATTRIBUTION, DAILY_USAGE, rollup_upsert_sql

    t = time.perf_counter()
    call_command("migrate", verbosity=0)
    t = _step("migrate", t)
    providers = {p.slug: p for p in Provider.objects.all()}
    people = User.objects.bulk_create(
        [User(username=f"bench{i}", password="!", time_zone="UTC") for i in range(users)]
    )
    for person in people:  # bulk_create sends no post_save: make what the signal would
        workspace_personal_create(user=person)
    accounts = ProviderAccount.objects.bulk_create(
        [
            ProviderAccount(
                workspace=u.personal_workspace,
                provider=providers[slug],
                name=f"{slug} {u.username}",
                monthly_budget=1000,
            )  # fmt: skip
            for u in people
            for slug, _ in ACCOUNTS
        ]
    )
    target_accounts = [a for a in accounts if a.workspace_id == people[0].personal_workspace.pk]
    other_accounts = [a for a in accounts if a.workspace_id != people[0].personal_workspace.pk]
    creators = [people[0], people[1], people[min(2, users - 1)], None]
    keys = IngestKey.objects.bulk_create(
        [
            IngestKey(account=a, name=f"service {i}", digest=f"{i:064}", hint=f"cti_b{i}",
                      created_by=creators[i % len(creators)])
            for i, a in enumerate(target_accounts)
        ]
    )  # fmt: skip
    key_of = {k.account_id: k.pk for k in keys}
    official_ids = [a.pk for a in accounts if a.provider.slug in ("openai", "anthropic")]
    models = "ARRAY[" + ",".join(f"'{m}'" for m in MODELS) + "]"
    with connection.cursor() as cur:
        cur.execute("CREATE TEMP TABLE bench_acct (grp int, idx int, account_id bigint, "
                    "provider_id bigint, key_id bigint)")  # fmt: skip
        rows = [(0, i, a.pk, a.provider_id, key_of[a.pk]) for i, a in enumerate(target_accounts)]
        rows += [(1, i, a.pk, a.provider_id, None) for i, a in enumerate(other_accounts)]
        cur.executemany("INSERT INTO bench_acct VALUES (%s, %s, %s, %s, %s)", rows)
        cur.execute("CREATE INDEX ON bench_acct (grp, idx)")
        t = _step("users and accounts", t)
        # Loading into an indexed table is several times slower than indexing afterwards.
        cur.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = 'usage_usagerecord'::regclass AND contype = 'u'"
        )
        constraints = cur.fetchall()
        cur.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'usage_usagerecord' "
            "AND indexname NOT IN (SELECT conname FROM pg_constraint "
            "WHERE conrelid = 'usage_usagerecord'::regclass)"
        )
        indexes = cur.fetchall()
        for name, _ in constraints:
            cur.execute(f'ALTER TABLE usage_usagerecord DROP CONSTRAINT "{name}"')
        for name, _ in indexes:
            cur.execute(f'DROP INDEX "{name}"')
        # Each month's partition first (PostgreSQL), or the rows would wait in the default one.
        today = datetime.now(UTC).date()
        partitions_ensure(months=[today - timedelta(days=n) for n in range(DAYS + 1)])
        # One request each: spread over the last DAYS days, 1 in 50 unpriced, 1 in 200 failed.
        # End user u = g mod U works in project u mod P and uses 3 features; 1 in 10 untagged.
        u, p, f = shape.end_users, shape.projects, shape.features
        cur.execute(
            f"""
            INSERT INTO usage_usagerecord (account_id, provider_id, natural_key, model, line_item,
                description, request_id, bucket_start, granularity, input_tokens,
                cache_read_tokens, cache_write_tokens, cache_write_1h_tokens, output_tokens,
                reasoning_tokens, request_count, seats, search_queries, images, audio_seconds,
                credits, cost, currency, source, status, tags, raw, created_at, updated_at,
                ingest_key_id)
            SELECT a.account_id, a.provider_id, 'req:' || g, ({models})[1 + g %% {len(MODELS)}],
                '', '', 'r' || g, now() - make_interval(secs => (g * 7919) %% ({DAYS} * 86400)),
                'event', 200 + g %% 3000, g %% 500, 0, 0, 50 + g %% 800, 0, 1, 0, 0, 0, 0, 0,
                CASE WHEN g %% 50 = 0 THEN NULL ELSE (200 + g %% 3000) * 0.0000025 END, 'USD',
                'estimated', CASE WHEN g %% 200 = 0 THEN 'failed' ELSE 'ok' END,
                CASE WHEN g %% 10 = 0 THEN '{{}}'::jsonb ELSE jsonb_build_object(
                    'project', 'project-' || (g %% {u}) %% {p},
                    'user', 'user-' || g %% {u},
                    'feature', 'feature-' || ((g %% {u}) + (g / {u}) %% 3) %% {f}) END,
                '{{}}', now(), now(), CASE WHEN g %% 10 = 0 THEN NULL ELSE a.key_id END
            FROM generate_series(1, %s::bigint) g
            JOIN bench_acct a ON a.grp = CASE WHEN g <= %s THEN 0 ELSE 1 END
                AND a.idx = CASE WHEN g <= %s THEN g %% %s ELSE g %% %s END
            """,
            [total, events, events, len(target_accounts), len(other_accounts)],
        )
        t = _step(f"{total:,} usage events (generate_series)", t)
        # Official daily lines for the OpenAI/Anthropic accounts: they supersede estimates.
        cur.execute(
            f"""
            INSERT INTO usage_usagerecord (account_id, provider_id, natural_key, model, line_item,
                description, request_id, bucket_start, granularity, input_tokens,
                cache_read_tokens, cache_write_tokens, cache_write_1h_tokens, output_tokens,
                reasoning_tokens, request_count, seats, search_queries, images, audio_seconds,
                credits, cost, currency, source, status, tags, raw, created_at, updated_at)
            SELECT a.account_id, a.provider_id,
                'day:' || d::date || '|' || m || '|' || m, m, m, '', '', d, 'day',
                100000, 0, 0, 0, 20000, 0, 100, 0, 0, 0, 0, 0, 1.25, 'USD', 'official', 'ok',
                '{{}}', '{{}}', now(), now()
            FROM bench_acct a
            CROSS JOIN generate_series(date_trunc('day', now() AT TIME ZONE 'UTC')
                - interval '{DAYS} days', date_trunc('day', now() AT TIME ZONE 'UTC')
                - interval '1 day', interval '1 day') d
            CROSS JOIN unnest(({models})[1:2]) m
            WHERE a.account_id = ANY(%s)
            """,
            [official_ids],
        )
        t = _step("official daily lines", t)
        for name, definition in constraints:
            cur.execute(f'ALTER TABLE usage_usagerecord ADD CONSTRAINT "{name}" {definition}')
        for _, definition in indexes:
            cur.execute(definition)
        t = _step(f"re-create {len(constraints) + len(indexes)} indexes", t)
        # The writers' own statement: official rows first, so that estimates are born
        # superseded where official figures exist (official supersedes estimated).
        records = "usage_usagerecord"
        for rollup in (DAILY_USAGE, DAILY_ATTRIBUTION):
            for where in ("WHERE source = 'official'", "WHERE source <> 'official'"):
                sql = rollup_upsert_sql(vendor="postgresql", rows=records, where=where,
                                        rollup=rollup)  # fmt: skip
                cur.execute(sql)
        t = _step("daily and attribution roll-ups (the writers' INSERT ... SELECT ... GROUP BY)", t)
        cur.execute("ANALYZE")
        _step("ANALYZE", t)
        for table in ("usage_dailyusage", "usage_dailyattribution"):
            cur.execute(f"SELECT count(*) FROM {table}")
            everyone = cur.fetchone()[0]
            cur.execute(f"SELECT count(*) FROM {table} WHERE account_id = ANY(%s)",
                        [[a.pk for a in target_accounts]])  # fmt: skip
            print(f"  {table}: {everyone:,} rows, {cur.fetchone()[0]:,} of the timed user")
    return people[0].pk


def measure(user_id: int, requests: int, verbose: bool = False) -> dict:
    from django.db import connection
    from django.test import Client

    from accounts.models import User
    from usage.breakdown import GROUP_BYS

    ninety_days_ago = (datetime.now(UTC) - timedelta(days=89)).date().isoformat()
    client = Client()
    client.force_login(User.objects.get(pk=user_id))
    pages = {
        "dashboard (this month)": ("/", {}),
        "dashboard (last 90 days)": ("/?period=90d", {}),
        "dashboard HTMX partial (last 30 days)": ("/?period=30d", {"HX-Request": "true"}),
        **{
            f"dashboard, 90 days by {group_by}": (f"/?period=90d&group_by={group_by}", {})
            for group_by in GROUP_BYS
        },
        "dashboard HTMX partial, 90 days by user": (
            "/?period=90d&group_by=user",
            {"HX-Request": "true"},
        ),
        "breakdown API, 90 days by user (all series)": (
            f"/api/usage/breakdown?group_by=user&start={ninety_days_ago}",
            {},
        ),
        "forecast API": ("/api/usage/forecast", {}),
        "reconciliation API": ("/api/reconciliation", {}),
    }
    results = {}
    for label, (url, headers) in pages.items():
        for _ in range(10):  # warm-up: connection, template and URL caches
            assert client.get(url, headers=headers).status_code == 200
        queries: list[tuple[float, str]] = []

        def record(execute, sql, params, many, context, queries=queries):
            started = time.perf_counter()
            try:
                return execute(sql, params, many, context)
            finally:
                queries.append(((time.perf_counter() - started) * 1000, sql))

        with connection.execute_wrapper(record):
            client.get(url, headers=headers)
        if verbose:
            for ms, sql in sorted(queries, reverse=True)[:3]:
                print(f"    {label}: {ms:6.1f} ms  {sql[:150]}")
        timings = []
        for _ in range(requests):
            started = time.perf_counter()
            response = client.get(url, headers=headers)
            timings.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200
        results[label] = (timings, len(queries))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000, help="events of the user timed")
    parser.add_argument("--total", type=int, default=1_000_000, help="events in the database")
    parser.add_argument("--full", action="store_true", help="1M events in 10M (the target's)")
    parser.add_argument("--projects", type=int, default=20, help="distinct project tags")
    parser.add_argument("--end-users", type=int, default=200, help="distinct user tags")
    parser.add_argument("--features", type=int, default=10, help="distinct feature tags")
    parser.add_argument("--users", type=int, default=100, help="users sharing the database")
    parser.add_argument("--requests", type=int, default=200, help="timed requests per page")
    parser.add_argument("--verbose", action="store_true", help="print the slowest queries")
    parser.add_argument("--database", default=BENCH_DB, help="name of the bench database")
    parser.add_argument("--reuse", action="store_true", help="time an existing bench database")
    parser.add_argument("--keep", action="store_true", help="keep the bench database")
    args = parser.parse_args()
    if args.full:
        args.events, args.total = 1_000_000, 10_000_000
    if args.total < args.events or args.users < 2:
        parser.error("--total must be >= --events and --users >= 2")
    base = os.environ.get("DATABASE_URL", "")
    if not base.startswith(("postgres://", "postgresql://")):
        print("Set DATABASE_URL to a PostgreSQL server (its database name is ignored).")
        return 2
    os.environ["DATABASE_URL"] = _db_url(base, args.database)
    django_environment()
    os.environ.setdefault("ALLOWED_HOSTS", "testserver")
    os.environ["DEBUG"] = "false"

    if not args.reuse:
        _admin(base, f"DROP DATABASE IF EXISTS {args.database}")
        _admin(base, f"CREATE DATABASE {args.database}")
    try:
        import django

        django.setup()
        from django.db import connection
        from django.test.utils import override_settings

        from accounts.models import User

        if args.reuse:
            user_id = User.objects.get(username="bench0").pk
        else:
            print(f"Building {args.database}: {args.total:,} events, {args.events:,} timed")
            user_id = build(args.events, args.total, args.users, args)
        storages = {
            "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
            "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
        }
        with override_settings(STORAGES=storages):
            results = measure(user_id, args.requests, args.verbose)
        print(f"\n{args.requests} requests per page, server time (ms):")
        print(f"  {'page':46} {'p50':>7} {'p95':>7} {'max':>7} {'queries':>8}")
        for label, (timings, nqueries) in results.items():
            p95 = statistics.quantiles(timings, n=20)[18]
            print(f"  {label:46} {statistics.median(timings):7.1f} {p95:7.1f} "
                  f"{max(timings):7.1f} {nqueries:8}")  # fmt: skip
        connection.close()
    finally:
        if not (args.keep or args.reuse):
            _admin(base, f"DROP DATABASE IF EXISTS {args.database} WITH (FORCE)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
