"""How pages write a moment and a UTC day: one filter each.

A moment (`DateTimeField`) is shown in the zone the request activated (the user's, see
accounts.middleware) with the zone's abbreviation, so "14:03 CET" never reads as UTC. A day of
the roll-up is a UTC day whatever the user's zone, and says so where it is shown.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from django import template
from django.utils import timezone
from django.utils.dateformat import format as date_format

register = template.Library()


@register.filter(expects_localtime=False)
def when(value, fmt: str = "Y-m-d H:i") -> str:
    """`{{ run.finished_at|when }}` → "2026-12-06 09:14 EST"; "" for None."""
    if not isinstance(value, datetime):
        return "" if value in (None, "") else str(value)
    if timezone.is_naive(value):
        value = value.replace(tzinfo=UTC)
    local = timezone.localtime(value)
    return f"{date_format(local, fmt)} {local.tzname()}"


@register.filter(expects_localtime=False)
def utc_day(value, fmt: str = "Y-m-d") -> str:
    """`{{ record.bucket_start|utc_day }}`: the UTC calendar day of a moment, or a date as is."""
    if isinstance(value, datetime):
        if timezone.is_naive(value):
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC).date()
    if isinstance(value, date):
        return date_format(value, fmt)
    return "" if value in (None, "") else str(value)
