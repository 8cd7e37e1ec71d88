"""Writes of usage records: synced lines, manual entries."""

from __future__ import annotations

import json
import operator
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, timedelta
from decimal import Decimal

from django.db import connection, transaction
from django.utils import timezone

from audit.models import AuditEvent
from audit.services import audit_changes, audit_record, audit_snapshot, audit_state
from providers.adapters.base import UsageLine
from providers.http import ProviderError
from providers.models import ProviderAccount
from usage import bounds
from usage.models import TOKEN_FIELDS, UNIT_FIELDS, Granularity, RecordStatus, Source, UsageRecord
from usage.services.rollup import day_start, rollup_rebuild

# Fields a synced line sets; compared to decide "updated" vs "unchanged".
_LINE_FIELDS = ("model", "line_item", *TOKEN_FIELDS, *UNIT_FIELDS, "cost", "currency")


@dataclass(frozen=True)
class UpsertCounts:
    fetched: int
    created: int
    updated: int
    deleted: int


def synced_natural_key(day: date, model: str, line_item: str) -> str:
    return f"day:{day.isoformat()}|{model}|{line_item}"[:600]


@transaction.atomic
def usage_lines_replace_window(
    *, account: ProviderAccount, start: date, end: date, lines: Sequence[UsageLine]
) -> UpsertCounts:
    """Make the official rows of [start, end) exactly the fetched lines.

    Upserts on the natural key with the new values (never adds to them), deletes rows the
    provider no longer reports for the window, and rebuilds the roll-up of the days that
    changed. Running it twice with the same lines changes nothing (not even updated_at).

    The writes bypass the ORM (bulk_update's CASE WHEN statements made a 90-day re-sync take
    13 s on PostgreSQL): COPY, plus one UPDATE ... FROM a COPY-filled scratch table, on
    PostgreSQL; executemany on SQLite.
    """
    lines = [ln for ln in lines if start <= ln.day < end]
    lines_check(lines)
    by_key: dict[str, UsageLine] = {}
    for ln in lines:
        # Two lines on one key would make the second overwrite the first; adapters sum
        # them, and this guard keeps a bug there from silently losing money.
        key = synced_natural_key(ln.day, ln.model, ln.line_item)
        if key in by_key:
            raise ValueError(f"duplicate line for {key}")
        by_key[key] = ln
    existing = {
        row[1]: row
        for row in UsageRecord.objects.select_for_update()
        .filter(
            account=account,
            source=Source.OFFICIAL,
            granularity=Granularity.DAY,
            bucket_start__gte=day_start(start),
            bucket_start__lt=day_start(end),
        )
        .order_by()
        .values_list("pk", "natural_key", "bucket_start", *_LINE_FIELDS)
    }
    to_create: list[tuple[str, UsageLine]] = []
    to_update: list[tuple[int, UsageLine]] = []
    changed_days: set[date] = set()
    for key, ln in by_key.items():
        row = existing.get(key)
        if row is None:
            to_create.append((key, ln))
            changed_days.add(ln.day)
        elif row[3:] != _line_values(ln):  # Decimal compares by value: 0.50 == 0.5
            to_update.append((row[0], ln))
            changed_days.add(ln.day)
    stale = [row for key, row in existing.items() if key not in by_key]
    changed_days.update(row[2].astimezone(UTC).date() for row in stale)

    _insert_synced(account, to_create)
    _update_synced(to_update)
    for i in range(0, len(stale), 1000):
        UsageRecord.objects.filter(pk__in=[row[0] for row in stale[i : i + 1000]]).delete()
    if changed_days:
        rollup_rebuild(account_id=account.pk, days=changed_days, source=Source.OFFICIAL)
    return UpsertCounts(
        fetched=len(lines), created=len(to_create), updated=len(to_update), deleted=len(stale)
    )


_line_values = operator.attrgetter(*_LINE_FIELDS)


def lines_check(lines: Sequence[UsageLine]) -> None:
    """Refuse a fetched window holding a figure outside the input bounds (usage/bounds.py).

    A provider reporting such a figure sent a malformed answer: the sync fails, writing
    nothing, rather than storing part of the window or a number no one can trust.
    """
    for ln in lines:
        try:
            bounds.values_check(ln)
        except bounds.OutOfBounds as exc:
            name = ln.model or ln.line_item
            raise ProviderError(
                f"malformed response: the {ln.day} line {name[:80]!r}: {exc}", permanent=False
            ) from None


def _prepared(field_name: str, value):
    """A value as the driver expects it, as the ORM would prepare it (JSON, datetimes)."""
    return UsageRecord._meta.get_field(field_name).get_db_prep_save(value, connection)


def _insert_synced(account: ProviderAccount, items: list[tuple[str, UsageLine]]) -> None:
    if not items:
        return
    now = _prepared("created_at", timezone.now())
    empty_tags = json.dumps({})
    starts: dict[date, object] = {}
    columns = [
        "account_id",
        "provider_id",
        "natural_key",
        "bucket_start",
        "granularity",
        "source",
        "status",
        "description",
        "request_id",
        "tags",
        "raw",
        "created_at",
        "updated_at",
        *_LINE_FIELDS,
    ]
    rows = []
    for key, ln in items:
        if ln.day not in starts:
            starts[ln.day] = _prepared("bucket_start", day_start(ln.day))
        rows.append(
            (
                account.pk,
                account.provider_id,
                key,
                starts[ln.day],
                Granularity.DAY.value,
                Source.OFFICIAL.value,
                RecordStatus.OK.value,
                "",
                "",
                empty_tags,
                json.dumps(ln.raw),  # what JSONField stores (no custom encoder)
                now,
                now,
                *_line_values(ln),
            )
        )
    table = UsageRecord._meta.db_table
    column_list = ", ".join(columns)
    with connection.cursor() as cursor:
        if connection.vendor != "postgresql":
            placeholders = ", ".join(["%s"] * len(columns))
            cursor.executemany(f"INSERT INTO {table} ({column_list}) VALUES ({placeholders})", rows)
            return
        # COPY: the rows stream in one command, with no SQL text to build or parse.
        with cursor.copy(f"COPY {table} ({column_list}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)


def _update_synced(items: list[tuple[int, UsageLine]]) -> None:
    if not items:
        return
    now = _prepared("updated_at", timezone.now())
    columns = [*_LINE_FIELDS, "raw"]
    rows = [(*_line_values(ln), json.dumps(ln.raw), now, pk) for pk, ln in items]
    table = UsageRecord._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor != "postgresql":
            assignments = ", ".join(f"{c} = %s" for c in [*columns, "updated_at"])
            cursor.executemany(f"UPDATE {table} SET {assignments} WHERE id = %s", rows)
            return
        # COPY the new values into a scratch table, then one UPDATE ... FROM joins them in.
        names = [*columns, "updated_at"]
        scratch = "pg_temp.usage_sync_update_scratch"
        types = ", ".join(
            f"{c} {UsageRecord._meta.get_field(c).db_type(connection)}" for c in names
        )
        cursor.execute(f"DROP TABLE IF EXISTS {scratch}")
        cursor.execute(f"CREATE TABLE {scratch} ({types}, id bigint) ON COMMIT DROP")
        with cursor.copy(f"COPY {scratch} ({', '.join([*names, 'id'])}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        assignments = ", ".join(f"{c} = v.{c}" for c in names)
        cursor.execute(
            f"UPDATE {table} AS u SET {assignments} FROM {scratch} AS v WHERE u.id = v.id"
        )
        cursor.execute(f"DROP TABLE {scratch}")


@transaction.atomic
def manual_entry_create(**fields) -> UsageRecord:
    """A hand-entered figure (Copilot seats, an invoice, a local run) for one UTC day.

    Arguments: those of ``manual_entry_write``."""
    record = manual_entry_write(**fields)
    audit_record(action=AuditEvent.Action.CREATED, obj=record, after=audit_snapshot(record))
    return record


@transaction.atomic
def manual_entry_write(
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
    """Write a manual entry without an audit event of its own: for callers (the true-up) whose
    own event tells the story."""
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


# What a manual entry's edit may change (the rest — source, key, tags — stays as created).
_MANUAL_FIELDS = (
    "model",
    "description",
    "cost",
    "input_tokens",
    "output_tokens",
    "request_count",
    "seats",
    "credits",
    "images",
    "search_queries",
    "audio_seconds",
)


def _require_manual(record: UsageRecord) -> None:
    if record.source != Source.MANUAL:
        # Synced and per-request figures are the provider's; a sync would overwrite an edit.
        raise ValueError(f"only manual entries can be changed, not {record.source} records")


@transaction.atomic
def manual_entry_update(
    *, record: UsageRecord, account: ProviderAccount, day: date, **changes
) -> UsageRecord:
    """Change a manual entry and rebuild the roll-up of the day(s) it left and joined.

    Moving it to another account or day rebuilds both (account, day) groups, so the old place
    loses exactly what the new one gains. `changes` are fields of `_MANUAL_FIELDS`.
    """
    _require_manual(record)
    unknown = set(changes) - set(_MANUAL_FIELDS)
    if unknown:
        raise TypeError(f"manual_entry_update() got unexpected fields {sorted(unknown)}")
    # Lock the row so two edits at once cannot leave the roll-up of a stale day behind.
    record = UsageRecord.objects.select_for_update().get(pk=record.pk)
    before = audit_state(record)
    old_account_id, old_day = record.account_id, record.bucket_start.astimezone(UTC).date()
    record.account = account
    record.provider_id = account.provider_id
    record.bucket_start = day_start(day)
    for name, value in changes.items():
        setattr(record, name, value)
    record.line_item = record.description[:255]
    record.full_clean(exclude=["account", "provider"])
    record.save()
    if old_account_id != account.pk:
        rollup_rebuild(account_id=old_account_id, days=[old_day], source=Source.MANUAL)
        rollup_rebuild(account_id=account.pk, days=[day], source=Source.MANUAL)
    else:
        rollup_rebuild(account_id=account.pk, days={old_day, day}, source=Source.MANUAL)
    audit_record(
        action=AuditEvent.Action.UPDATED, obj=record, changes=audit_changes(before, record)
    )
    return record


@transaction.atomic
def manual_entry_delete(*, record: UsageRecord) -> None:
    """Delete a manual entry (only those: synced figures come back with the next sync).

    Deleting one already gone does nothing, so a double submit is harmless.
    """
    _require_manual(record)
    current = UsageRecord.objects.select_for_update().filter(pk=record.pk).first()
    if current is not None:
        audit_record(action=AuditEvent.Action.DELETED, obj=current, before=audit_snapshot(current))
        usage_record_delete(record=current)


@transaction.atomic
def usage_record_delete(*, record: UsageRecord) -> None:
    day = record.bucket_start.astimezone(UTC).date()
    account_id, source = record.account_id, record.source
    record.delete()
    rollup_rebuild(account_id=account_id, days=[day], source=source)


def days_between(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days)]
