"""Statements on the hot paths (ingestion and the proxy), planned once per connection.

Django turns psycopg's prepared statements off (`prepare_threshold=None`, for connection
poolers) and binds parameters on the client, so PostgreSQL parses and plans every statement
afresh. For the roll-up insert that is 1.4 ms of planning against 0.8 ms of work, on every
proxied call and ingested batch. `fetch_prepared` runs such a statement through a
server-binding psycopg cursor with `prepare=True`: the first execution on a connection
prepares it, later ones only bind and run.

PostgreSQL would still re-plan a prepared statement on every call while it guesses a custom
plan cheaper than the generic one, which it does for the roll-up insert (measured: 0 generic
plans in 1,200 calls). Our prepared statements have one sensible plan whatever the values, so
each connection sets `plan_cache_mode = force_generic_plan`; Django's own queries are never
prepared and are not affected.

Behind a transaction-mode pooler (PgBouncer < 1.21) prepared statements do not survive; set
`DATABASE_PREPARED_STATEMENTS=false` there and these statements run like any other.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.signals import connection_created
from django.dispatch import receiver


def _prepared_statements_on() -> bool:
    return getattr(settings, "DATABASE_PREPARED_STATEMENTS", True)


@receiver(connection_created)
def _plan_prepared_statements_once(sender, connection, **kwargs) -> None:
    if connection.vendor == "postgresql" and _prepared_statements_on():
        with connection.cursor() as cursor:
            cursor.execute("SET plan_cache_mode = force_generic_plan")


def fetch_prepared(sql: str, params, *, alias: str = DEFAULT_DB_ALIAS) -> list[tuple]:
    """Execute one statement and return all its rows.

    On PostgreSQL the parameters are bound on the server, so `%(name)b` placeholders (binary,
    e.g. for arrays) work as well as `%s`; other backends take Django's cursor and `%s` only.
    """
    conn = connections[alias]
    if conn.vendor != "postgresql":
        with conn.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()
    import psycopg

    conn.close_if_health_check_failed()
    conn.ensure_connection()
    conn.validate_thread_sharing()
    with conn.wrap_database_errors:
        cursor = psycopg.Cursor(conn.connection)
    with cursor:
        if conn.queries_logged:
            # DEBUG, assertNumQueries: through Django's wrapper, so the query is seen.
            with conn.make_debug_cursor(cursor) as logged:
                logged.execute(sql, params)
                return logged.fetchall()
        with conn.wrap_database_errors:
            cursor.execute(sql, params, prepare=_prepared_statements_on())
            return cursor.fetchall()


def pg_array_literal(values: Iterable) -> str:
    """A PostgreSQL array literal of `values` in text form, for one `%s::type[]` parameter.

    None becomes NULL; every other value is written with str() inside double quotes, with
    backslashes and double quotes escaped, which is how PostgreSQL reads any element type
    (numbers, times, text, JSON) from an array literal. It travels as a bound parameter, never
    as SQL, so the quoting only has to hold inside the literal. Text containing NUL cannot be
    stored by PostgreSQL at all; callers refuse it first.
    """
    return (
        "{"
        + ",".join(
            "NULL"
            if value is None
            else '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
            for value in values
        )
        + "}"
    )
