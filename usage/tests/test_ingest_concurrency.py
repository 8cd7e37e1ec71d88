"""Concurrent batches with the same request ids: the database keeps each id once.

Real transactions (transaction=True) and real threads, each with its own connection, post
overlapping batches at the same moment through the HTTP layer.

On SQLite the test database is in memory with a shared cache, where a second writer fails at
once ("database table is locked") instead of waiting as it does on a real database file. So
the threads there work on a file copy, with the production settings (WAL, IMMEDIATE
transactions, busy timeout) - the way the app runs on SQLite.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from contextlib import contextmanager
from decimal import Decimal

import pytest
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.test import Client

from providers.services import ingest_key_create
from providers.tests.factories import AccountFactory, provider
from usage.models import DailyUsage, Price, UsageRecord
from usage.services.prices import EPOCH
from usage.tests.rollup_check import assert_rollups_match_records

THREADS = 6
EVENTS = 60


@contextmanager
def threads_see_a_real_database(tmp_path):
    """On SQLite, copy the in-memory test database to a file that new threads connect to."""
    if connection.vendor != "sqlite":
        yield
        return
    path = tmp_path / "concurrency.sqlite3"
    connection.ensure_connection()
    target = sqlite3.connect(path)
    connection.connection.backup(target)
    # A file switches to WAL on its first connection and keeps it, as the app's database does
    # after `migrate`. Left to the threads, six first connections would race to switch it,
    # and SQLite answers that race "database is locked" at once, without waiting (it failed
    # CI once this way).
    target.execute("PRAGMA journal_mode=WAL")
    target.close()
    # New threads build their connection from the handler's settings: pointed at the file
    # there, in a dict of their own. The open in-memory connection keeps its own dict, still
    # naming the memory database, which is what stops Django from ever closing it: a live
    # server's request thread that shares that connection (an earlier test's keep-alive) and
    # ends meanwhile calls close() on it, and with the file's name there it really would close,
    # and the in-memory test database would be gone for every later test.
    settings = connections.settings
    original = settings[DEFAULT_DB_ALIAS]
    settings[DEFAULT_DB_ALIAS] = {**original, "NAME": str(path)}
    try:
        yield
    finally:
        settings[DEFAULT_DB_ALIAS] = original


def in_thread(fn):
    """Run fn on a fresh connection (the one the workers used) and return its result."""
    box: list = []

    def run():
        try:
            box.append(fn())
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=60)
    return box[0]


# serialized_rollback: the flush afterwards must not leave the seeded catalogue missing or
# re-created under the next serialized test.
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_it_stores_each_request_id_once_under_concurrent_batches(tmp_path):
    Price.objects.create(
        provider=provider("openai"),
        model="gpt-4o",
        valid_from=EPOCH,
        input_per_token=Decimal("2.50") * Decimal("0.000001"),
    )
    account = AccountFactory(provider=provider("openai"))
    raw, _ = ingest_key_create(account=account)
    barrier = threading.Barrier(THREADS)
    answers: list = []
    errors: list = []

    def worker(offset: int) -> None:
        try:
            # Every thread sends all ids, each starting at a different point in the list.
            ids = [f"r{(i + offset * 10) % EVENTS}" for i in range(EVENTS)]
            body = [
                {
                    "request_id": rid,
                    "occurred_at": "2026-11-15T10:00:00Z",
                    "model": "gpt-4o",
                    "usage": {"prompt_tokens": 1000, "completion_tokens": 0},
                    # Several attribution rows, each written by several threads at once.
                    "tags": {"project": f"p{int(rid[1:]) % 3}"},
                }
                for rid in ids
            ]
            barrier.wait(timeout=30)
            response = Client().post(
                "/api/usage/events",
                data=json.dumps(body),
                content_type="application/json",
                HTTP_AUTHORIZATION=f"Bearer {raw}",
            )
            answers.append((response.status_code, response.json()))
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    with threads_see_a_real_database(tmp_path):
        threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        count = in_thread(lambda: UsageRecord.objects.filter(account=account).count())
        day = in_thread(lambda: DailyUsage.objects.get(account=account))
        projects = in_thread(lambda: assert_rollups_match_records([account.pk]))

    assert not errors, errors
    assert [code for code, _ in answers] == [200] * THREADS
    assert sum(a["created"] for _, a in answers) == EVENTS  # each id created by exactly one
    assert sum(a["duplicate"] for _, a in answers) == EVENTS * (THREADS - 1)
    assert count == EVENTS
    # 60 × 1,000 × $2.50/M = 60 × $0.0025 = $0.15, each request counted once
    assert (day.record_count, day.input_tokens, day.cost) == (EVENTS, 60_000, Decimal("0.15"))
    # Each project has 20 of the 60 ids: 20 × $0.0025 = $0.05.
    assert sorted((k[4], v["cost"]) for k, v in projects.items() if k[3] == "project") == [
        (f"p{n}", Decimal("0.05")) for n in range(3)
    ]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks of one statement")
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_ingestion_locks_the_roll_ups_in_the_order_every_other_writer_does():
    # rollup_rebuild and rollup_add write DailyUsage, then DailyAttribution (ROLLUPS); the
    # one-statement insert must too, or an official sync's re-flagging of a day's estimated
    # rows and that day's ingestion could each hold a row the other waits for.
    from django.db import OperationalError, connections

    from usage.extraction import RequestUsage
    from usage.services.requests import RequestEvent, request_events_record

    account = AccountFactory(provider=provider("groq"))

    def record(request_id: str) -> None:
        usage = RequestUsage(model="m", input_tokens=5)
        event = RequestEvent(request_id=request_id, usage=usage, tags={"project": "p"})
        request_events_record(account=account, events=[event])

    record("first")  # both roll-up rows exist from now on
    holder, probe = (connections.create_connection("default") for _ in range(2))
    holder.set_autocommit(False)
    try:
        with holder.cursor() as cursor:  # hold the attribution row
            cursor.execute(
                "SELECT 1 FROM usage_dailyattribution WHERE account_id = %s FOR UPDATE",
                [account.pk],
            )
        writer = threading.Thread(target=lambda: (record("second"), connection.close()))
        writer.start()
        with probe.cursor() as cursor:
            for _ in range(200):  # until the writer waits for the row (at most 10 s)
                cursor.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND datname = current_database() AND query LIKE %s",
                    ["%INSERT INTO usage_usagerecord%"],
                )
                if cursor.fetchone()[0]:
                    break
                time.sleep(0.05)
            else:
                pytest.fail("the writer never waited for the attribution row")
            # Waiting for the attribution row, the writer already holds its DailyUsage row.
            with pytest.raises(OperationalError):
                cursor.execute(
                    "SELECT 1 FROM usage_dailyusage WHERE account_id = %s FOR UPDATE NOWAIT",
                    [account.pk],
                )
    finally:
        holder.rollback()
        holder.close()
        probe.close()
    writer.join(timeout=30)
    assert UsageRecord.objects.filter(account=account).count() == 2
