"""Writes of usage records: synced lines, manual entries."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from django.db import transaction

from providers.adapters.base import UsageLine
from providers.models import ProviderAccount
from usage.models import Granularity, Source, UsageRecord
from usage.services.rollup import day_start, rollup_rebuild

# Fields a synced line sets; compared to decide "updated" vs "unchanged".
_LINE_FIELDS = (
    "model",
    "line_item",
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
    "output_tokens",
    "reasoning_tokens",
    "request_count",
    "seats",
    "search_queries",
    "images",
    "audio_seconds",
    "credits",
    "cost",
    "currency",
)


@dataclass(frozen=True)
class UpsertCounts:
    fetched: int
    created: int
    updated: int
    deleted: int


def synced_natural_key(day: date, model: str, line_item: str) -> str:
    return f"day:{day.isoformat()}|{model}|{line_item}"[:600]


def _same(a, b) -> bool:
    if isinstance(a, Decimal) or isinstance(b, Decimal):
        return (a is None and b is None) or (
            a is not None and b is not None and Decimal(a) == Decimal(b)
        )
    return a == b


@transaction.atomic
def usage_lines_replace_window(
    *, account: ProviderAccount, start: date, end: date, lines: Sequence[UsageLine]
) -> UpsertCounts:
    """Make the official rows of [start, end) exactly the fetched lines.

    Upserts on the natural key with the new values (never adds to them), deletes rows the
    provider no longer reports for the window, and rebuilds those days' roll-up. Running it
    twice with the same lines changes nothing.
    """
    lines = [ln for ln in lines if start <= ln.day < end]
    by_key = {}
    for ln in lines:
        # Two lines on one key would make the second overwrite the first; adapters sum
        # them, and this guard keeps a bug there from silently losing money.
        key = synced_natural_key(ln.day, ln.model, ln.line_item)
        if key in by_key:
            raise ValueError(f"duplicate line for {key}")
        by_key[key] = ln
    existing = {
        r.natural_key: r
        for r in UsageRecord.objects.select_for_update().filter(
            account=account,
            source=Source.OFFICIAL,
            granularity=Granularity.DAY,
            bucket_start__gte=day_start(start),
            bucket_start__lt=day_start(end),
        )
    }
    to_create, to_update = [], []
    for key, ln in by_key.items():
        values = {f: getattr(ln, f) for f in _LINE_FIELDS}
        row = existing.get(key)
        if row is None:
            to_create.append(
                UsageRecord(
                    account=account,
                    provider_id=account.provider_id,
                    natural_key=key,
                    bucket_start=day_start(ln.day),
                    granularity=Granularity.DAY,
                    source=Source.OFFICIAL,
                    raw=ln.raw,
                    **values,
                )
            )
        elif not all(_same(getattr(row, f), v) for f, v in values.items()):
            for f, v in values.items():
                setattr(row, f, v)
            row.raw = ln.raw
            to_update.append(row)
    stale = [r.pk for k, r in existing.items() if k not in by_key]
    UsageRecord.objects.bulk_create(to_create, batch_size=1000)
    UsageRecord.objects.bulk_update(
        to_update, [*_LINE_FIELDS, "raw", "updated_at"], batch_size=1000
    )
    if stale:
        UsageRecord.objects.filter(pk__in=stale).delete()
    touched_days = {ln.day for ln in lines} | {r.bucket_start.date() for r in existing.values()}
    if to_create or to_update or stale:
        rollup_rebuild(account_id=account.pk, days=touched_days, source=Source.OFFICIAL)
    return UpsertCounts(
        fetched=len(lines), created=len(to_create), updated=len(to_update), deleted=len(stale)
    )


@transaction.atomic
def manual_entry_create(
    *,
    account: ProviderAccount,
    day: date,
    model: str = "",
    description: str = "",
    cost: Decimal | None,
    input_tokens: int = 0,
    output_tokens: int = 0,
    request_count: int = 0,
    seats: Decimal = Decimal(0),
    credits: Decimal = Decimal(0),
    images: int = 0,
    search_queries: int = 0,
    audio_seconds: Decimal = Decimal(0),
    tags: dict | None = None,
) -> UsageRecord:
    """A hand-entered figure (Copilot seats, an invoice, a local run) for one UTC day."""
    record = UsageRecord(
        account=account,
        provider_id=account.provider_id,
        natural_key=f"manual:{uuid.uuid4()}",
        model=model,
        description=description,
        line_item=description[:255],
        bucket_start=day_start(day),
        granularity=Granularity.DAY,
        source=Source.MANUAL,
        cost=cost,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        request_count=request_count,
        seats=seats,
        credits=credits,
        images=images,
        search_queries=search_queries,
        audio_seconds=audio_seconds,
        tags=tags or {},
    )
    record.full_clean(exclude=["account", "provider"])
    record.save()
    rollup_rebuild(account_id=account.pk, days=[day], source=Source.MANUAL)
    return record


@transaction.atomic
def usage_record_delete(*, record: UsageRecord) -> None:
    day = record.bucket_start.date()
    account_id, source = record.account_id, record.source
    record.delete()
    rollup_rebuild(account_id=account_id, days=[day], source=source)


def days_between(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days)]
