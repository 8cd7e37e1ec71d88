"""The hot-path statement helpers: array literals and statements prepared once."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from django.db import connection

from costtracker.db import Statement, fetch_prepared, pg_array_literal
from providers.services import ingest_key_create
from providers.tests.factories import AccountFactory, provider
from usage.ingest_apis import ingest_items
from usage.models import UsageRecord

postgresql_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="PostgreSQL array literals and prepared plans"
)


def test_array_literal_quotes_every_value_and_writes_none_as_null():
    assert pg_array_literal([1, None, 'a"b\\c', "NULL", ""]) == (
        '{"1",NULL,"a\\"b\\\\c","NULL",""}'
    )
    assert pg_array_literal([]) == "{}"


@postgresql_only
@pytest.mark.django_db
def test_postgresql_reads_back_exactly_what_the_literal_holds():
    texts = ['a"b\\c', "NULL", "", " x ", "{,}", "ü€😀", '\\\\""']
    rows = fetch_prepared("SELECT unnest(%s::text[])", [pg_array_literal(texts)])
    assert [r[0] for r in rows] == texts
    money = [Decimal("1E-12"), None, Decimal("123.456000000001")]
    rows = fetch_prepared("SELECT unnest(%s::numeric(28, 12)[])", [pg_array_literal(money)])
    assert [r[0] for r in rows] == money
    docs = [json.dumps({"k": 'q"\\z', "n": [1, 2]}), json.dumps({})]
    rows = fetch_prepared("SELECT unnest(%s::jsonb[])", [pg_array_literal(docs)])
    # Django has psycopg hand jsonb back as text (JSONField parses it).
    assert [json.loads(r[0]) for r in rows] == [{"k": 'q"\\z', "n": [1, 2]}, {}]


@postgresql_only
@pytest.mark.django_db
def test_the_ingest_statement_is_prepared_once_and_planned_generically():
    account = AccountFactory(provider=provider("openai"))
    _, key = ingest_key_create(account=account, name="t")
    for n in range(7):
        item = {"request_id": f"r{n}", "model": "m", "usage": {"prompt_tokens": 1}}
        assert ingest_items(key=key, items=[item])[0].status == "created"
    assert UsageRecord.objects.count() == 7
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements "
            "WHERE statement LIKE '%%INSERT INTO usage_usagerecord%%'"
        )
        plans = cursor.fetchall()
    # One statement for all seven calls, never re-planned: planning it took longer than
    # running it for one row (costtracker/db.py).
    assert plans == [(7, 0)]


def test_a_statement_numbers_each_name_once_in_order_of_first_use():
    statement = Statement.from_named("SELECT %(b)s, %(a)s, %(b)s || '%%'")
    assert statement.native == "SELECT $1, $2, $1 || '%'"
    assert statement.values({"a": 1, "b": 2, "unused": 3}) == [2, 1]
    with pytest.raises(ValueError, match="placeholders only"):
        Statement.from_named("SELECT %s")


@pytest.mark.django_db
def test_a_statement_runs_with_its_names_on_every_path():
    statement = Statement.from_named("SELECT %(x)s || %(y)s, %(x)s")
    assert fetch_prepared(statement, {"x": "a", "y": "b"}) == [("ab", "a")]


@postgresql_only
@pytest.mark.django_db
def test_the_ingest_statement_is_longer_than_psycopg_caches_and_never_parsed_by_it(monkeypatch):
    from psycopg import _queries

    from usage.services.requests import _insert_and_roll_up_sql

    # Past this length psycopg parses a statement's placeholders on every call (~50 µs for
    # this one); a Statement goes through a RawCursor, with nothing to parse.
    assert len(_insert_and_roll_up_sql("default").named) > _queries.MAX_CACHED_STATEMENT_LENGTH

    def parsed(*args):
        raise AssertionError("psycopg parsed a long statement")

    monkeypatch.setattr(_queries, "_query2pg_nocache", parsed)
    account = AccountFactory(provider=provider("openai"))
    _, key = ingest_key_create(account=account, name="t")
    for n in range(2):
        item = {"request_id": f"r{n}", "model": "m", "usage": {"prompt_tokens": 1}}
        assert ingest_items(key=key, items=[item])[0].status == "created"


def test_number_literals_skip_the_quoting():
    assert pg_array_literal([1, None, Decimal("-0.5"), Decimal("1E-12")], numbers=True) == (
        "{1,NULL,-0.5,1E-12}"
    )


def _drop_our_connection_on_the_server() -> int:
    """Have PostgreSQL end this connection's backend, as a restart or an idle kill would, and
    reset the health-check flag as the start of a request does. Returns the old backend pid."""
    from django.db import connections

    connection.ensure_connection()
    pid = connection.connection.info.backend_pid
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    finally:
        other.close()
    connection.health_check_done = False
    return pid


@postgresql_only
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_key_lookup_on_a_connection_the_server_dropped_reconnects_instead_of_failing():
    # fetch_prepared replaces Django's per-request health check (a SELECT 1 round trip):
    # a read that finds its connection dead reconnects and runs again.

    from providers.selectors import ingest_key_lookup

    account = AccountFactory(provider=provider("openai"))
    raw, key = ingest_key_create(account=account, name="t")
    pid = _drop_our_connection_on_the_server()
    assert ingest_key_lookup(raw=raw) == key
    assert connection.connection.info.backend_pid != pid


@pytest.mark.django_db
def test_ingestion_works_the_same_when_queries_are_logged():
    # With DEBUG or assertNumQueries the hot statements go through Django's own cursor
    # (client-side binding, unprepared) so that they are seen; the result must not differ.
    from django.test.utils import CaptureQueriesContext

    account = AccountFactory(provider=provider("openai"))
    _, key = ingest_key_create(account=account, name="t")
    items = [
        {"request_id": f"q{n}", "model": "m", "usage": {"prompt_tokens": n + 1}} for n in range(3)
    ]
    with CaptureQueriesContext(connection) as captured:
        results = ingest_items(key=key, items=items)
    assert [r.status for r in results] == ["created"] * 3
    assert sorted(UsageRecord.objects.values_list("input_tokens", flat=True)) == [1, 2, 3]
    assert any("INSERT INTO usage_usagerecord" in q["sql"] for q in captured.captured_queries)


@postgresql_only
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_an_ingest_write_on_a_connection_the_server_dropped_reconnects_instead_of_failing():
    # With the key remembered and the price book cached, the write is a request's first
    # statement; being idempotent it may run again on a fresh connection.

    account = AccountFactory(provider=provider("openai"))
    _, key = ingest_key_create(account=account, name="t")
    first = {"request_id": "a", "model": "m", "usage": {"prompt_tokens": 1}}
    assert ingest_items(key=key, items=[first])[0].status == "created"
    pid = _drop_our_connection_on_the_server()
    second = {"request_id": "b", "model": "m", "usage": {"prompt_tokens": 2}}
    assert ingest_items(key=key, items=[second])[0].status == "created"
    assert sorted(UsageRecord.objects.values_list("request_id", flat=True)) == ["a", "b"]
    assert connection.connection.info.backend_pid != pid  # it did reconnect
