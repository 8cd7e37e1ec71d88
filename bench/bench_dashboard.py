"""Dashboard server time for a user with many usage events, on PostgreSQL.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/x .venv/bin/python bench/bench_dashboard.py
    ... --events 1000000 --total 10000000 --requests 200   (the defaults)
    ... --events 100000 --total 1000000                    (a quicker, smaller run)

Creates its own database `ct_insight_bench` on the server DATABASE_URL points at (dropped at the
end unless --keep), fills it in SQL (generate_series; Django would take hours for 10M rows),
builds the daily roll-up with one INSERT ... SELECT ... GROUP BY, then times the dashboard view
through django.test.Client, logged in, and prints p50/p95 per page. The target is p95 <= 50 ms
for a user with 1M events in a database of 10M: the dashboard reads only the roll-up.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
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


def build(events: int, total: int, users: int) -> int:
    """Fill the bench database; return the target user's id."""
    from django.core.management import call_command
    from django.db import connection

    from accounts.models import User
    from providers.models import Provider, ProviderAccount

    t = time.perf_counter()
    call_command("migrate", verbosity=0)
    t = _step("migrate", t)
    providers = {p.slug: p for p in Provider.objects.all()}
    people = User.objects.bulk_create(
        [User(username=f"bench{i}", password="!", time_zone="UTC") for i in range(users)]
    )
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
    official_ids = [a.pk for a in accounts if a.provider.slug in ("openai", "anthropic")]
    models = "ARRAY[" + ",".join(f"'{m}'" for m in MODELS) + "]"
    with connection.cursor() as cur:
        cur.execute("CREATE TEMP TABLE bench_acct (grp int, idx int, account_id bigint, "
                    "provider_id bigint)")  # fmt: skip
        rows = [(0, i, a.pk, a.provider_id) for i, a in enumerate(target_accounts)]
        rows += [(1, i, a.pk, a.provider_id) for i, a in enumerate(other_accounts)]
        cur.executemany("INSERT INTO bench_acct VALUES (%s, %s, %s, %s)", rows)
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
        # One request each: spread over the last DAYS days, 1 in 50 unpriced, 1 in 200 failed.
        cur.execute(
            f"""
            INSERT INTO usage_usagerecord (account_id, provider_id, natural_key, model, line_item,
                description, request_id, bucket_start, granularity, input_tokens,
                cache_read_tokens, cache_write_tokens, cache_write_1h_tokens, output_tokens,
                reasoning_tokens, request_count, seats, search_queries, images, audio_seconds,
                credits, cost, currency, source, status, tags, raw, created_at, updated_at)
            SELECT a.account_id, a.provider_id, 'req:' || g, ({models})[1 + g %% {len(MODELS)}],
                '', '', 'r' || g, now() - make_interval(secs => (g * 7919) %% ({DAYS} * 86400)),
                'event', 200 + g %% 3000, g %% 500, 0, 0, 50 + g %% 800, 0, 1, 0, 0, 0, 0, 0,
                CASE WHEN g %% 50 = 0 THEN NULL ELSE (200 + g %% 3000) * 0.0000025 END, 'USD',
                'estimated', CASE WHEN g %% 200 = 0 THEN 'failed' ELSE 'ok' END, '{{}}', '{{}}',
                now(), now()
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
        cur.execute(
            """
            INSERT INTO usage_dailyusage (account_id, provider_id, model, day, source, cost,
                unpriced_count, unpriced_tokens, record_count, failed_count, request_count,
                input_tokens, cache_read_tokens, cache_write_tokens, cache_write_1h_tokens,
                output_tokens, reasoning_tokens, superseded)
            SELECT account_id, provider_id, model, (bucket_start AT TIME ZONE 'UTC')::date,
                source, COALESCE(SUM(cost), 0),
                COUNT(*) FILTER (WHERE cost IS NULL AND source <> 'official'),
                COALESCE(SUM(input_tokens + output_tokens)
                    FILTER (WHERE cost IS NULL AND source <> 'official'), 0),
                COUNT(*), COUNT(*) FILTER (WHERE status = 'failed'), SUM(request_count),
                SUM(input_tokens), SUM(cache_read_tokens), SUM(cache_write_tokens),
                SUM(cache_write_1h_tokens), SUM(output_tokens), SUM(reasoning_tokens), FALSE
            FROM usage_usagerecord
            GROUP BY 1, 2, 3, 4, 5
            """
        )
        # As the roll-up writers do: estimates of days with official figures are superseded.
        cur.execute(
            """
            UPDATE usage_dailyusage d SET superseded = TRUE
            WHERE d.source = 'estimated' AND EXISTS (
                SELECT 1 FROM usage_dailyusage o
                WHERE o.account_id = d.account_id AND o.day = d.day AND o.source = 'official')
            """
        )
        t = _step("daily roll-up (INSERT ... SELECT ... GROUP BY, superseded flags)", t)
        cur.execute("ANALYZE")
        _step("ANALYZE", t)
        cur.execute("SELECT count(*) FROM usage_dailyusage")
        print(f"  roll-up rows: {cur.fetchone()[0]:,}")
    return people[0].pk


def measure(user_id: int, requests: int, verbose: bool = False) -> dict:
    from django.db import connection
    from django.test import Client

    from accounts.models import User

    client = Client()
    client.force_login(User.objects.get(pk=user_id))
    pages = {
        "dashboard (this month)": ("/", {}),
        "dashboard (last 90 days)": ("/?period=90d", {}),
        "dashboard HTMX partial (last 30 days)": ("/?period=30d", {"HX-Request": "true"}),
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
    parser.add_argument("--events", type=int, default=1_000_000, help="events of the user timed")
    parser.add_argument("--total", type=int, default=10_000_000, help="events in the database")
    parser.add_argument("--users", type=int, default=100, help="users sharing the database")
    parser.add_argument("--requests", type=int, default=200, help="timed requests per page")
    parser.add_argument("--verbose", action="store_true", help="print the slowest queries")
    parser.add_argument("--reuse", action="store_true", help=f"time an existing {BENCH_DB}")
    parser.add_argument("--keep", action="store_true", help=f"keep database {BENCH_DB}")
    args = parser.parse_args()
    if args.total < args.events or args.users < 2:
        parser.error("--total must be >= --events and --users >= 2")
    base = os.environ.get("DATABASE_URL", "")
    if not base.startswith(("postgres://", "postgresql://")):
        print("Set DATABASE_URL to a PostgreSQL server (its database name is ignored).")
        return 2
    os.environ["DATABASE_URL"] = _db_url(base, BENCH_DB)
    django_environment()
    os.environ.setdefault("ALLOWED_HOSTS", "testserver")
    os.environ["DEBUG"] = "false"

    if not args.reuse:
        _admin(base, f"DROP DATABASE IF EXISTS {BENCH_DB}")
        _admin(base, f"CREATE DATABASE {BENCH_DB}")
    try:
        import django

        django.setup()
        from django.db import connection
        from django.test.utils import override_settings

        from accounts.models import User

        if args.reuse:
            user_id = User.objects.get(username="bench0").pk
        else:
            print(f"Building {BENCH_DB}: {args.total:,} events, {args.events:,} for the timed user")
            user_id = build(args.events, args.total, args.users)
        storages = {
            "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
            "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
        }
        with override_settings(STORAGES=storages):
            results = measure(user_id, args.requests, args.verbose)
        print(f"\n{args.requests} requests per page, server time (ms):")
        print(f"  {'page':40} {'p50':>7} {'p95':>7} {'max':>7} {'queries':>8}")
        for label, (timings, nqueries) in results.items():
            p95 = statistics.quantiles(timings, n=20)[18]
            print(f"  {label:40} {statistics.median(timings):7.1f} {p95:7.1f} "
                  f"{max(timings):7.1f} {nqueries:8}")  # fmt: skip
        connection.close()
    finally:
        if not (args.keep or args.reuse):
            _admin(base, f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
