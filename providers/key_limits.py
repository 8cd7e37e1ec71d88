"""Per ingest key request limits: at most `IngestKey.requests_per_minute` proxied calls in a
clock minute, past which the proxy answers 429 with `retry-after`.

One counter row per key and minute in the database (IngestKeyMinute), raised by one upsert
per call, so every process and node counts the same calls. Fixed windows: across a minute
boundary a client may make up to twice the limit within a few seconds (the end of one minute
and the start of the next). Refused calls count too, so hammering does not open the door.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import connection

from providers.models import IngestKeyMinute

_TABLE = IngestKeyMinute._meta.db_table


def key_minute_admit(*, key_id: int, limit: int, now: datetime) -> int | None:
    """None when the call may go; otherwise the whole seconds until the minute ends."""
    minute = now.replace(second=0, microsecond=0)
    at = connection.ops.adapt_datetimefield_value(minute)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {_TABLE} (key_id, minute, calls) VALUES (%s, %s, 1) "
            f"ON CONFLICT (key_id, minute) DO UPDATE SET calls = {_TABLE}.calls + 1 "
            "RETURNING calls",
            [key_id, at],
        )
        calls = cursor.fetchone()[0]
        if calls == 1:  # the minute's first call clears the key's older minutes
            before = connection.ops.adapt_datetimefield_value(minute - timedelta(minutes=1))
            cursor.execute(
                f"DELETE FROM {_TABLE} WHERE key_id = %s AND minute < %s", [key_id, before]
            )
    if calls <= limit:
        return None
    left = (minute + timedelta(minutes=1) - now).total_seconds()
    return max(1, int(left + 0.999))
