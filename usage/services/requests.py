"""Recording per-request usage (ingestion API and proxy): priced, idempotent, rolled up.

A request id is the idempotency key: `INSERT … ON CONFLICT DO NOTHING RETURNING` lets the
database (not a read-then-write race) decide which events are new, also across concurrent
batches, and only the rows this call really inserted are added onto the roll-up.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from django.db import connection, transaction
from django.utils import timezone

from providers.models import ProviderAccount
from usage.extraction import RequestUsage
from usage.models import Granularity, RecordStatus, Source, UsageRecord
from usage.pricing import cost_for
from usage.services.prices import PriceBook
from usage.services.rollup import rollup_add

_CHUNK = 400  # rows per INSERT: keeps SQLite under its 32,766 bound-parameter limit
COST_QUANTUM = Decimal("1e-12")


@dataclass
class RequestEvent:
    request_id: str
    usage: RequestUsage
    occurred_at: datetime | None = None
    status: str = RecordStatus.OK
    tags: dict = field(default_factory=dict)
    raw_usage: dict | None = None


def _compute_rate(account: ProviderAccount) -> Decimal | None:
    rate = (account.config or {}).get("compute_rate_per_hour")
    return Decimal(str(rate)) if rate not in (None, "") else None


def build_record(
    *, account: ProviderAccount, event: RequestEvent, book: PriceBook, now: datetime
) -> UsageRecord:
    usage = event.usage
    at = (event.occurred_at or now).astimezone(UTC)
    if event.status == RecordStatus.FAILED:
        cost = Decimal(0)  # the provider rejected it: nothing was billed
    else:
        rule = book.rule_for(provider=account.provider, model=usage.model, at=at)
        cost = cost_for(
            account.provider.slug, usage, rule, compute_rate_per_hour=_compute_rate(account)
        )
        if cost is not None:
            cost = cost.quantize(COST_QUANTUM)
    return UsageRecord(
        account_id=account.pk,
        provider_id=account.provider_id,
        natural_key=f"req:{event.request_id}",
        request_id=event.request_id,
        model=usage.model[:200],
        bucket_start=at,
        granularity=Granularity.EVENT,
        input_tokens=usage.input_tokens,
        cache_read_tokens=usage.cache_read_tokens,
        cache_write_tokens=usage.cache_write_tokens,
        cache_write_1h_tokens=usage.cache_write_1h_tokens,
        output_tokens=usage.output_tokens,
        reasoning_tokens=usage.reasoning_tokens,
        request_count=usage.request_count,
        search_queries=usage.search_queries,
        images=usage.images,
        audio_seconds=usage.audio_seconds,
        cost=cost,
        source=Source.ESTIMATED,
        status=event.status,
        tags=event.tags,
        raw={
            "usage": event.raw_usage,
            # What re-pricing needs beyond the token columns.
            "pricing": {
                "provider_cost": None if usage.provider_cost is None else str(usage.provider_cost),
                "total_duration_ns": usage.total_duration_ns,
                "search_context_size": usage.search_context_size,
            },
        },
        created_at=now,
        updated_at=now,
    )


def _insert_new(records: Sequence[UsageRecord]) -> set[str]:
    """Insert, skipping natural keys that exist; return the keys actually inserted."""
    fields = [f for f in UsageRecord._meta.concrete_fields if not f.primary_key]
    table = UsageRecord._meta.db_table
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    row_sql = "(" + ", ".join(["%s"] * len(fields)) + ")"
    inserted: set[str] = set()
    with connection.cursor() as cursor:
        for i in range(0, len(records), _CHUNK):
            chunk = records[i : i + _CHUNK]
            params = [
                f.get_db_prep_save(getattr(r, f.attname), connection) for r in chunk for f in fields
            ]
            cursor.execute(
                f"INSERT INTO {table} ({columns}) VALUES {', '.join([row_sql] * len(chunk))} "
                "ON CONFLICT (account_id, natural_key) DO NOTHING RETURNING natural_key",
                params,
            )
            inserted.update(row[0] for row in cursor.fetchall())
    return inserted


def request_events_record(
    *, account: ProviderAccount, events: Sequence[RequestEvent], book: PriceBook | None = None
) -> dict[str, str]:
    """Record events for one account. Returns {request_id: "created" | "duplicate"}.

    Events repeating a request id inside the batch count once (the first wins).
    """
    book = book or PriceBook()
    now = timezone.now()
    records, seen = [], set()
    for event in events:
        if event.request_id in seen:
            continue
        seen.add(event.request_id)
        records.append(build_record(account=account, event=event, book=book, now=now))
    with transaction.atomic():
        inserted = _insert_new(records)
        rollup_add([r for r in records if r.natural_key in inserted])
    return {
        e.request_id: ("created" if f"req:{e.request_id}" in inserted else "duplicate")
        for e in events
    }
