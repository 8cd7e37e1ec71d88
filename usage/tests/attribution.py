"""An oracle for breakdowns: what each group must show, worked out from the usage records
alone in Python (Decimal), never from a roll-up. A test comparing a breakdown with it checks
"breakdown == sum of the underlying records"."""

from __future__ import annotations

from datetime import UTC, date
from decimal import Decimal

from providers.models import IngestKey
from usage.models import TOKEN_FIELDS, Source, UsageRecord

_TOKENS = [f for f in TOKEN_FIELDS if f != "reasoning_tokens"]


def _day(record: UsageRecord) -> date:
    return record.bucket_start.astimezone(UTC).date()


def _superseded_test(records: list[UsageRecord]):
    official = {(r.account_id, _day(r)) for r in records if r.source == Source.OFFICIAL}
    return lambda r: r.source == Source.ESTIMATED and (r.account_id, _day(r)) in official


def record_group_key(record: UsageRecord, group_by: str) -> str:
    """The breakdown key a record counts under, from the record alone."""
    tags = record.tags or {}
    if group_by == "provider":
        return record.provider.slug
    if group_by == "account":
        return str(record.account_id)
    if group_by == "model":
        return f"{record.provider.slug}/{record.model}"
    if group_by in ("project", "user", "feature"):
        return tags.get(group_by, "")
    if group_by == "ingest_key":
        return str(record.ingest_key_id or 0)
    assert group_by == "member"
    if not record.ingest_key_id:
        return ""
    key = IngestKey.objects.filter(pk=record.ingest_key_id).first()
    return str(key.created_by_id) if key and key.created_by_id else "unknown"


def expected_breakdown(
    *, user, group_by: str, start: date, end: date
) -> dict[str, tuple[Decimal, int, int, int]]:
    """{key: (cost, unpriced count, requests, tokens)} of the user's records of [start, end),
    estimates superseded by official figures left out."""
    records = [
        r
        for r in UsageRecord.objects.filter(account__workspace__personal_for=user).select_related(
            "provider"
        )
        if start <= _day(r) < end
    ]
    superseded = _superseded_test(records)
    result: dict[str, tuple[Decimal, int, int, int]] = {}
    for r in records:
        if superseded(r):
            continue
        cost, unpriced, requests, tokens = result.get(
            record_group_key(r, group_by), (Decimal(0), 0, 0, 0)
        )
        result[record_group_key(r, group_by)] = (
            cost + (r.cost if r.cost is not None else Decimal(0)),
            unpriced + (r.cost is None and r.source != Source.OFFICIAL),
            requests + r.request_count,
            tokens + sum(getattr(r, f) for f in _TOKENS),
        )
    return result
