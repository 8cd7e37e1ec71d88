"""Reads: whether a date range reaches before the raw per-request history (issue 14).

RAW_RETENTION_DAYS removes estimated (per-request) records a month at a time
(usage.services.history); the daily roll-ups, official figures and manual entries stay. A
page, export or API answer whose range starts before the first kept day says so: totals are
complete, the request-level detail is not. This module decides when; templates
(usage/_raw_history_notice.html) and the X-Raw-History-Start header only show it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from django.conf import settings

from usage import selectors
from usage.models import Source

HEADER = "X-Raw-History-Start"


@dataclass(frozen=True)
class RawHistoryNotice:
    """The raw history was cut and the range asked about starts before its first day."""

    first_kept: date  # the first UTC day whose per-request records are all kept
    retention_days: int | None  # RAW_RETENTION_DAYS now; None: unset since the removal

    @property
    def iso(self) -> str:
        return self.first_kept.isoformat()


def raw_history_notice(*, start: date | None, source: str | None = None) -> RawHistoryNotice | None:
    """The notice a range starting on `start` (a UTC day; None: from the beginning) needs, or
    None when it is wholly within the raw history or nothing was ever removed. With
    `start=None` it is simply where the raw history starts, if it was ever cut.

    `source`: a range narrowed to official figures or manual entries misses nothing (only
    estimated records are removed), so it needs no notice.
    """
    if source and source != Source.ESTIMATED:
        return None
    first_kept = selectors.raw_history_missing(start=start or date.min)
    if first_kept is None:
        return None
    return RawHistoryNotice(first_kept=first_kept, retention_days=settings.RAW_RETENTION_DAYS)


def raw_history_header(response, notice: RawHistoryNotice | None):
    """Mark `response` with X-Raw-History-Start: YYYY-MM-DD when `notice` is given."""
    if notice is not None:
        response[HEADER] = notice.iso
    return response
