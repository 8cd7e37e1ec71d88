"""What the roll-ups must hold, worked out again from the usage records in Python (Decimal),
independently of the SQL that usage/services/rollup.py generates, for tests to compare with
what that SQL wrote: every write path must leave each roll-up equal to a GROUP BY over the
records."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC
from decimal import Decimal

from usage.bounds import TAG_KEYS
from usage.models import TOKEN_FIELDS, DailyAttribution, DailyUsage, Source, UsageRecord

_COUNTS = ("record_count", "unpriced_count", "unpriced_tokens", "failed_count", "request_count")


def _day(record: UsageRecord):
    return record.bucket_start.astimezone(UTC).date()


def _daily_keys(record: UsageRecord) -> list[tuple]:
    return [(record.account_id, record.provider_id, record.model, _day(record), record.source)]


def _attribution_keys(record: UsageRecord) -> list[tuple]:
    """One row per dimension: each tag's value, and the key's id as text; '' for none."""
    tags = record.tags or {}
    values = {
        **{tag: tags.get(tag) or "" for tag in TAG_KEYS},
        "ingest_key": str(record.ingest_key_id) if record.ingest_key_id else "",
    }
    return [
        (record.account_id, _day(record), record.source, dimension, value)
        for dimension, value in values.items()
    ]


_DAILY_KEY = ("account_id", "provider_id", "model", "day", "source")
_ATTRIBUTION_KEY = ("account_id", "day", "source", "dimension", "value")


def _expected(keys: Callable[[UsageRecord], list[tuple]], records: list[UsageRecord]) -> dict:
    official_days = {(r.account_id, _day(r)) for r in records if r.source == Source.OFFICIAL}
    groups: dict[tuple, dict] = {}
    for r in records:
        for k in keys(r):
            g = groups.setdefault(
                k,
                {
                    "cost": Decimal(0),
                    **dict.fromkeys((*_COUNTS, *TOKEN_FIELDS), 0),
                    "superseded": r.source == Source.ESTIMATED
                    and (r.account_id, _day(r)) in official_days,
                },
            )
            g["record_count"] += 1
            if r.cost is not None:
                g["cost"] += r.cost
            elif r.source != Source.OFFICIAL:  # official token lines carry no cost by design
                g["unpriced_count"] += 1
                g["unpriced_tokens"] += r.input_tokens + r.output_tokens
            g["failed_count"] += r.status == "failed"
            g["request_count"] += r.request_count
            for name in TOKEN_FIELDS:
                g[name] += getattr(r, name)
    return groups


def _stored(model, key_names: tuple[str, ...], account_ids) -> dict:
    qs = model.objects.all()
    if account_ids is not None:
        qs = qs.filter(account_id__in=account_ids)
    values = ("cost", *_COUNTS, *TOKEN_FIELDS, "superseded")
    return {
        tuple(row[k] for k in key_names): {v: row[v] for v in values}
        for row in qs.values(*key_names, *values)
    }


def expected_attribution(account_ids: Iterable[int] | None = None) -> dict:
    return _expected(_attribution_keys, _records(account_ids))


def stored_attribution(account_ids: Iterable[int] | None = None) -> dict:
    return _stored(DailyAttribution, _ATTRIBUTION_KEY, _ids(account_ids))


def _ids(account_ids):
    return None if account_ids is None else list(account_ids)


def _records(account_ids) -> list[UsageRecord]:
    qs = UsageRecord.objects.all()
    if account_ids is not None:
        qs = qs.filter(account_id__in=list(account_ids))
    return list(qs)


def assert_rollups_match_records(account_ids: Iterable[int] | None = None) -> dict:
    """Both roll-ups (all accounts, or those given) equal a GROUP BY over the records, to the
    last decimal place and superseded flag. Returns the attribution rows, by key."""
    ids = _ids(account_ids)
    records = _records(ids)
    daily = _stored(DailyUsage, _DAILY_KEY, ids)
    assert daily == _expected(_daily_keys, records)
    attribution = _stored(DailyAttribution, _ATTRIBUTION_KEY, ids)
    assert attribution == _expected(_attribution_keys, records)
    # Each dimension counts every record once: its rows sum to DailyUsage's.
    totals = _totals_by_day(((k[0], k[3], k[4]), v) for k, v in daily.items())
    for dimension in ("project", "user", "feature", "ingest_key"):
        assert (
            _totals_by_day(
                ((k[0], k[1], k[2]), v) for k, v in attribution.items() if k[3] == dimension
            )
            == totals
        ), dimension
    return attribution


def _totals_by_day(rows) -> dict:
    """{(account, day, source): {column: sum}} of (key, row) pairs."""
    found: dict[tuple, dict] = {}
    for key, row in rows:
        total = found.setdefault(key, dict.fromkeys(row, 0))
        for column, value in row.items():
            total[column] = value if column == "superseded" else total[column] + value
    return found
