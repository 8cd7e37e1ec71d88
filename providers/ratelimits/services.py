"""Writes of rate-limit state and 429 counts.

Both are upserts in one statement each, so several processes and nodes flushing at once need
no lock: a state row is replaced only by a newer observation (an older flush arriving late
never overwrites a newer one), and 429 counts add up.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import connection, transaction

from providers.models import ProviderAccount, RateLimitHit, RateLimitState
from providers.ratelimits.readings import DIMENSIONS, RateLimitReading

logger = logging.getLogger(__name__)

_STATE_COLUMNS = (
    "observed_at",
    *(f"{d}_{part}" for d in DIMENSIONS for part in ("limit", "remaining", "reset_at")),
    "retry_at",
)


@dataclass(frozen=True)
class Observation:
    """The latest reading of one account and model, and when it was made."""

    account_id: int
    model: str
    observed_at: datetime
    reading: RateLimitReading


def minute_of(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(second=0, microsecond=0)


def _existing(account_ids: Iterable[int]) -> set[int]:
    # An account deleted since the call would fail the whole statement on its foreign key.
    return set(ProviderAccount.objects.filter(pk__in=set(account_ids)).values_list("pk", flat=True))


def _dt(value: datetime | None):
    return None if value is None else connection.ops.adapt_datetimefield_value(value)


def _state_values(obs: Observation) -> list:
    values = [_dt(obs.observed_at)]
    for dimension in DIMENSIONS:
        window = getattr(obs.reading, dimension)
        if window is None:
            values += [None, None, None]
        else:
            values += [window.limit, window.remaining, _dt(window.reset_at)]
    values.append(_dt(obs.reading.retry_at))
    return values


def ratelimit_states_upsert(*, observations: Iterable[Observation]) -> int:
    """Store each (account, model)'s newest observation; return how many rows were offered.

    One INSERT … ON CONFLICT DO UPDATE … WHERE stored.observed_at < new.observed_at (the
    same statement on PostgreSQL and SQLite).
    """
    newest: dict[tuple[int, str], Observation] = {}
    for obs in observations:  # one row per key: PostgreSQL refuses to update a row twice
        key = (obs.account_id, obs.model)
        if key not in newest or newest[key].observed_at < obs.observed_at:
            newest[key] = obs
    if not newest:
        return 0
    known = _existing(key[0] for key in newest)
    # Sorted, so two processes' statements take row locks in the same order (no deadlock).
    observations = [newest[key] for key in sorted(newest) if key[0] in known]
    if not observations:
        return 0
    table = RateLimitState._meta.db_table
    columns = ("account_id", "model", *_STATE_COLUMNS)
    row = "(" + ", ".join(["%s"] * len(columns)) + ")"
    params: list = []
    for obs in observations:
        params += [obs.account_id, obs.model, *_state_values(obs)]
    updates = ", ".join(f"{c} = excluded.{c}" for c in _STATE_COLUMNS)
    sql = (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
        + ", ".join([row] * len(observations))
        + f" ON CONFLICT (account_id, model) DO UPDATE SET {updates}"
        + f" WHERE {table}.observed_at < excluded.observed_at"
    )
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)
    return len(observations)


def ratelimit_hits_add(*, hits: dict[tuple[int, str, str, datetime], int]) -> int:
    """Add 429 counts keyed by (account_id, model, source, UTC minute); return the total."""
    by_minute: dict[tuple[int, str, str, datetime], int] = {}
    for (account_id, model, source, at), n in hits.items():
        if n > 0:
            key = (account_id, model, source, minute_of(at))
            by_minute[key] = by_minute.get(key, 0) + n
    hits = by_minute
    if not hits:
        return 0
    known = _existing(key[0] for key in hits)
    hits = {key: n for key, n in hits.items() if key[0] in known}
    if not hits:
        return 0
    table = RateLimitHit._meta.db_table
    params: list = []
    for (account_id, model, source, minute), n in sorted(hits.items()):
        params += [account_id, model, source, _dt(minute), n]
    sql = (
        f"INSERT INTO {table} (account_id, model, source, minute, count) VALUES "
        + ", ".join(["(%s, %s, %s, %s, %s)"] * len(hits))
        + " ON CONFLICT (account_id, model, source, minute)"
        + f" DO UPDATE SET count = {table}.count + excluded.count"
    )
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)
    return sum(hits.values())


def ratelimit_hit_record(
    *, account_id: int, model: str = "", source: str, at: datetime, count: int = 1
) -> None:
    """Count 429s now, outside the proxy (a sync's call to a usage or cost API). Never
    raises: counting must not fail the caller; a failure is logged."""
    try:
        ratelimit_hits_add(hits={(account_id, model, source, at): count})
    except Exception:
        logger.exception("could not count a 429 for account %s", account_id)


HIT_RETENTION_DAYS = 31  # the panel shows seven days and the burst rule minutes


def ratelimit_hits_prune(*, workspace_id: int, now: datetime) -> int:
    """Delete a workspace's 429 counts older than HIT_RETENTION_DAYS; return how many went.
    Run with each alert evaluation (an indexed delete, usually of nothing)."""
    cutoff = minute_of(now) - timedelta(days=HIT_RETENTION_DAYS)
    old = RateLimitHit.objects.filter(account__workspace_id=workspace_id, minute__lt=cutoff)
    deleted, _ = old.delete()
    return deleted
