"""Sync write benchmark: the database work of an official usage sync.

    .venv/bin/python bench/bench_sync.py                      # SQLite (a temporary file)
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/ct_sync_bench \
        .venv/bin/python bench/bench_sync.py

With DATABASE_URL set it uses that database as it is (running `migrate` there first, which is a
no-op on an up-to-date database); without it, a temporary SQLite file. It creates its own user
and accounts and deletes them (and their usage) at the end.

Measured (fetching is left out: it is provider time, not ours): usage_lines_replace_window,
the one transaction a sync writes, with pre-built UsageLine lists.

1. A 90-day re-sync of one account with 10 models (3 lines per model and day: an input and an
   output cost line and a token line = 2,700 lines): first run (all created), second run
   (unchanged), third run (every value changed: all updated). Target: each ≤ 2 s.
2. Upsert throughput with 20,000 lines in one window: created, then all updated.
   Target: ≥ 10,000 rows/s on PostgreSQL.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import uuid
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

from benchlib import django_environment

ROOT = Path(__file__).resolve().parent.parent


def setup_django() -> tuple[str, callable]:
    """Configure Django; returns (backend label, cleanup of the temporary database)."""
    cleanup = lambda: None  # noqa: E731
    if not os.environ.get("DATABASE_URL"):
        folder = tempfile.mkdtemp(prefix="ct_sync_bench_")
        os.environ["DATABASE_URL"] = f"sqlite:///{folder}/bench.sqlite3"
        cleanup = lambda: shutil.rmtree(folder, ignore_errors=True)  # noqa: E731
    sys.path.insert(0, str(ROOT))
    django_environment()
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0, interactive=False)
    label = "PostgreSQL" if connection.vendor == "postgresql" else connection.vendor
    return ("SQLite" if label == "sqlite" else label), cleanup


def build_lines(*, first_day: date, days: int, models: int, version: int) -> list:
    """Provider-shaped lines; `version` shifts every value so a re-run is all updates."""
    from providers.adapters.base import UsageLine

    lines = []
    for d in range(days):
        day = first_day + timedelta(days=d)
        for m in range(models):
            model = f"bench-model-{m:03d}"
            n = d * models + m + version * 7
            input_cost = Decimal(n % 997 + 1) * Decimal("0.0000015") + Decimal(version)
            output_cost = Decimal(n % 613 + 1) * Decimal("0.000006") + Decimal(version)
            lines.append(
                UsageLine(
                    day=day,
                    model=model,
                    line_item=f"{model}, input",
                    cost=input_cost,
                    raw={"amount": {"value": str(input_cost), "currency": "usd"}},
                )
            )
            lines.append(
                UsageLine(
                    day=day,
                    model=model,
                    line_item=f"{model}, output",
                    cost=output_cost,
                    raw={"amount": {"value": str(output_cost), "currency": "usd"}},
                )
            )
            lines.append(
                UsageLine(
                    day=day,
                    model=model,
                    line_item="tokens:completions",
                    input_tokens=1000 + n + version,
                    cache_read_tokens=200 + n,
                    output_tokens=300 + n + version,
                    request_count=10 + n % 50,
                    raw={"input_tokens": 1200 + n, "num_model_requests": 10 + n % 50},
                )
            )
    return lines


def timed(account, start: date, end: date, lines: list):
    from usage.services.records import usage_lines_replace_window

    began = time.perf_counter()
    counts = usage_lines_replace_window(account=account, start=start, end=end, lines=lines)
    return time.perf_counter() - began, counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--models", type=int, default=10)
    parser.add_argument("--rows", type=int, default=20_000, help="lines for the throughput run")
    args = parser.parse_args()

    backend, cleanup = setup_django()
    from accounts.models import User
    from providers.models import Provider, ProviderAccount
    from usage.models import DailyUsage, Source, UsageRecord

    user = User.objects.create_user(username=f"bench-sync-{uuid.uuid4().hex[:8]}")
    openai = Provider.objects.get(slug="openai")
    ok = True
    try:
        account = ProviderAccount.objects.create(
            workspace=user.personal_workspace, provider=openai, name="bench 90 days"
        )
        today = date(2026, 11, 15)
        start = today - timedelta(days=args.days - 1)
        end = today + timedelta(days=1)
        first = build_lines(first_day=start, days=args.days, models=args.models, version=0)
        changed = build_lines(first_day=start, days=args.days, models=args.models, version=1)
        print(f"Sync write benchmark on {backend}")
        print(
            f"1. {args.days}-day re-sync, {args.models} models: {len(first):,} lines "
            "(target ≤ 2 s each)"
        )
        for name, lines, expect in (
            ("first run (creates)", first, "created"),
            ("second run (unchanged)", first, None),
            ("third run (all values changed)", changed, "updated"),
        ):
            seconds, counts = timed(account, start, end, lines)
            print(
                f"   {name:32s} {seconds:7.3f} s   created {counts.created:,} "
                f"updated {counts.updated:,} deleted {counts.deleted:,}"
            )
            if expect and getattr(counts, expect) != len(lines):
                print(f"   !! expected {len(lines):,} {expect}")
                ok = False
            if expect is None and (counts.created or counts.updated or counts.deleted):
                print("   !! the unchanged run changed rows")
                ok = False
            ok = ok and seconds <= 2
        records = UsageRecord.objects.filter(account=account, source=Source.OFFICIAL).count()
        rollups = DailyUsage.objects.filter(account=account).count()
        print(f"   rows: {records:,} usage records, {rollups:,} roll-up rows")

        bulk = ProviderAccount.objects.create(
            workspace=user.personal_workspace, provider=openai, name="bench bulk"
        )
        models = 50
        days = max(1, -(-args.rows // (models * 3)))
        bstart = today - timedelta(days=days - 1)
        lines = build_lines(first_day=bstart, days=days, models=models, version=0)[: args.rows]
        changed = build_lines(first_day=bstart, days=days, models=models, version=1)[: args.rows]
        print(f"2. upsert throughput: {len(lines):,} lines over {days} days (target ≥ 10,000/s)")
        for name, batch in (("create", lines), ("update all", changed)):
            seconds, _ = timed(bulk, bstart, end, batch)
            rate = len(batch) / seconds
            print(f"   {name:32s} {seconds:7.3f} s   {rate:10,.0f} rows/s")
            if backend == "PostgreSQL":
                ok = ok and rate >= 10_000
    finally:
        user.delete()  # cascades to the accounts, their usage and roll-up
        from django.db import connections

        connections.close_all()
        cleanup()
    print("targets met" if ok else "TARGETS MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
