"""Liveness and readiness: what /healthz and /readyz answer (costtracker/ops_views.py).

Readiness is three checks, in order; a check that cannot run because an earlier one failed
says so ("not checked"). What a check reports names the problem only: never a DSN, a host or
an exception's text (a driver's message can hold the connection string).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from functools import cache

from django.conf import settings
from django.db import DatabaseError, connection
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.recorder import MigrationRecorder
from django.utils import timezone

from costtracker.models import Heartbeat

logger = logging.getLogger(__name__)

HEARTBEAT = "cluster"  # the one Heartbeat row every cluster stamps
OK = "ok"
NOT_CHECKED = "not checked"


def heartbeat_stamp(*, now: datetime | None = None) -> None:
    """Record that a cluster ran a task now. Safe when several clusters stamp at once."""
    now = now or timezone.now()
    if not Heartbeat.objects.filter(name=HEARTBEAT).update(seen_at=now):
        # First stamp ever (or the row was removed): a concurrent first stamp may win the
        # insert, which is as good.
        Heartbeat.objects.update_or_create(name=HEARTBEAT, defaults={"seen_at": now})


def heartbeat_max_age() -> timedelta:
    """How old the last heartbeat may be: two sync intervals."""
    return timedelta(minutes=2 * settings.SYNC_INTERVAL_MINUTES)


def _database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as exc:
        logger.warning("readyz: the database is unreachable (%s)", type(exc).__name__)
        return "unreachable"
    return OK


@cache
def _migrations_on_disk() -> frozenset[tuple[str, str]]:
    """Every migration this code has, read once per process (its files do not change under
    it; building the graph cost ~11 ms a probe). Squashed migrations left unreplaced: applying
    one records each migration it replaces too."""
    return frozenset(MigrationLoader(None, replace_migrations=False).graph.nodes)


def _migrations() -> str:
    applied = MigrationRecorder(connection).applied_migrations()
    missing = _migrations_on_disk() - set(applied)
    if missing:
        return f"{len(missing)} migration(s) not applied"
    return OK


def _heartbeat(now: datetime) -> str:
    seen = Heartbeat.objects.filter(name=HEARTBEAT).values_list("seen_at", flat=True).first()
    if seen is None:
        return "no django-q2 cluster heartbeat seen yet"
    age = now - seen
    if age > heartbeat_max_age():
        return f"last django-q2 cluster heartbeat {int(age.total_seconds())} s ago"
    return OK


def readiness(*, now: datetime | None = None) -> dict[str, str]:
    """Each check's result: "ok", "not checked", or what is wrong."""
    now = now or timezone.now()
    checks = {"database": _database(), "migrations": NOT_CHECKED, "cluster_heartbeat": NOT_CHECKED}
    if checks["database"] != OK:
        return checks
    try:
        checks["migrations"] = _migrations()
        checks["cluster_heartbeat"] = _heartbeat(now)
    except DatabaseError as exc:  # the database went away between the checks, or a table is
        # missing because migrations never ran
        logger.warning("readyz: a check failed on the database (%s)", type(exc).__name__)
        for name, value in checks.items():
            if value == NOT_CHECKED:
                checks[name] = "failed on the database"
    return checks
