"""The roll-up has one definition (usage/services/rollup.py: ROLLUP_SUMS and the superseding
rule) and every writer is produced from it: the one-statement insert of per-request ingestion
(PostgreSQL), `rollup_add` (SQLite ingestion) and `rollup_rebuild` (synced/manual data). So a
new token type is one name in TOKEN_FIELDS: these tests fail if a column is left out anywhere,
or if two paths roll the same records up differently."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from django.db import models

from providers.adapters.base import UsageLine
from providers.tests.factories import AccountFactory, provider
from usage.bounds import TAG_KEYS
from usage.extraction import RequestUsage
from usage.models import (
    TOKEN_FIELDS,
    DailyAttribution,
    DailyUsage,
    Dimension,
    RecordStatus,
    Source,
    UsageRecord,
)
from usage.services.records import usage_lines_replace_window
from usage.services.requests import RequestEvent, request_events_record
from usage.services.rollup import (
    ATTRIBUTION_VALUES,
    ROLLUP_READS,
    ROLLUP_SUMS,
    ROLLUPS,
    rollup_add,
    rollup_rebuild,
)
from usage.tests.rollup_check import assert_rollups_match_records

NOV_3, NOV_4 = date(2026, 11, 3), date(2026, 11, 4)
_NUMBERS = (models.IntegerField, models.DecimalField)  # BigIntegerField is an IntegerField


def _numeric_columns(model) -> set[str]:
    return {
        f.attname
        for f in model._meta.concrete_fields
        if isinstance(f, _NUMBERS) and not f.primary_key and not f.is_relation
    }


def test_it_defines_every_numeric_roll_up_column_exactly_once():
    columns = [s.column for s in ROLLUP_SUMS]
    assert len(columns) == len(set(columns))
    assert set(columns) == _numeric_columns(DailyUsage)
    # The attribution roll-up keeps the same sums (its key is text: dimension and value).
    assert set(columns) == _numeric_columns(DailyAttribution)


def test_it_takes_a_value_from_every_record_for_every_attribution_dimension():
    # Each tag is a dimension of the same name (the tag bound reads them by tag key).
    assert set(ATTRIBUTION_VALUES) == set(Dimension) == {*TAG_KEYS, "ingest_key"}


def test_every_roll_up_is_keyed_and_written_in_the_order_of_its_unique_constraint():
    assert {r.model for r in ROLLUPS} == {DailyUsage, DailyAttribution}
    for rollup in ROLLUPS:
        (unique,) = rollup.model._meta.constraints
        fields = [rollup.model._meta.get_field(name).attname for name in unique.fields]
        assert list(rollup.conflict) == fields
        key = [column for column, _ in rollup.key]
        assert set(rollup.conflict) <= set(key)
        # Every column of the table is a key column, a sum, the flag or the id.
        stored = {f.attname for f in rollup.model._meta.concrete_fields if not f.primary_key}
        assert stored == {*key, *(s.column for s in ROLLUP_SUMS), "superseded"}


def test_it_sums_every_token_type_from_the_record_column_of_the_same_name():
    sums = {s.column: s for s in ROLLUP_SUMS}
    for name in ("request_count", *TOKEN_FIELDS):
        assert sums[name].value == name and sums[name].where is None
        assert name in ROLLUP_READS
    # Every count the records and the roll-up share is a token type (or request_count), so a
    # new token column on both models without its TOKEN_FIELDS entry fails here.
    shared = _numeric_columns(DailyUsage) & _numeric_columns(UsageRecord)
    assert shared == {"cost", "request_count", *TOKEN_FIELDS}
    # Every record column the roll-up reads exists.
    record_columns = {f.attname for f in UsageRecord._meta.concrete_fields}
    assert set(ROLLUP_READS) <= record_columns


def _rows(model, account) -> list[dict]:
    keep = [f.attname for f in model._meta.concrete_fields if not f.primary_key]
    rows = model.objects.filter(account=account, source=Source.ESTIMATED).order_by(*keep)
    return [
        {k: (Decimal(v) if k == "cost" else v) for k, v in r.items()} for r in rows.values(*keep)
    ]


def _snapshot(account) -> list[dict]:
    """The daily rows; the attribution rows must match the records too (rollup_check)."""
    assert_rollups_match_records([account.pk])
    return _rows(DailyUsage, account)


def _everything(account) -> tuple[list[dict], list[dict]]:
    return _rows(DailyUsage, account), _rows(DailyAttribution, account)


def _tokens(n: int) -> dict[str, int]:
    # A different count for every token type, so a column summed into another shows.
    return {f: (i + 1) * 100 + n for i, f in enumerate(TOKEN_FIELDS)}


@pytest.mark.django_db
def test_it_rolls_up_the_same_rows_on_every_path():
    account = AccountFactory(provider=provider("perplexity"))
    # Nov 3 has official figures: its estimated rows are superseded, on every path.
    usage_lines_replace_window(
        account=account,
        start=NOV_3,
        end=NOV_4,
        lines=[UsageLine(day=NOV_3, model="sonar", line_item="x", cost=Decimal("6"))],
    )

    def event(request_id, *, at, n, cost=None, model="sonar", status=RecordStatus.OK):
        usage = RequestUsage(model=model, provider_cost=cost, found=True, **_tokens(n))
        tags = {"project": "p", "feature": f"f{n % 2}"} if n % 3 else {}
        return RequestEvent(
            request_id=request_id, usage=usage, occurred_at=at, status=status, tags=tags
        )

    late_nov_3 = datetime(2026, 11, 3, 23, 59, 59, tzinfo=UTC)
    events = [
        event("a", at=late_nov_3, n=1, cost=Decimal("0.000000015")),
        event("b", at=late_nov_3, n=2, cost=Decimal("0.25")),
        event("c", at=datetime(2026, 11, 4, 0, 0, tzinfo=UTC), n=3, cost=Decimal("1.5")),
        event("d", at=datetime(2026, 11, 4, 8, tzinfo=UTC), n=4),  # no cost: unpriced
        event("e", at=datetime(2026, 11, 4, 9, tzinfo=UTC), n=5, status=RecordStatus.FAILED),
        event("f", at=datetime(2026, 11, 4, 9, tzinfo=UTC), n=6, cost=Decimal(2), model="pro"),
    ]
    # The first path: how ingestion writes (PostgreSQL: one statement; SQLite: rollup_add).
    # Two calls, so the second adds onto rows the first created.
    request_events_record(account=account, events=events[:3])
    request_events_record(account=account, events=events[3:])
    ingested = _snapshot(account)
    both = _everything(account)

    records = list(UsageRecord.objects.filter(account=account, source=Source.ESTIMATED))
    assert len(records) == 6
    for model in (DailyUsage, DailyAttribution):
        model.objects.filter(account=account, source=Source.ESTIMATED).delete()
    rollup_add(records[:2])
    rollup_add(records[2:])
    added = _snapshot(account)
    assert _everything(account) == both

    for _ in range(2):  # a rebuild run twice leaves the same rows
        rollup_rebuild(account_id=account.pk, days=[NOV_3, NOV_4], source=Source.ESTIMATED)
        assert _snapshot(account) == ingested
        assert _everything(account) == both
    assert added == ingested

    by_key = {(r["day"], r["model"]): r for r in ingested}
    assert set(by_key) == {(NOV_3, "sonar"), (NOV_4, "sonar"), (NOV_4, "pro")}
    nov_3, nov_4 = by_key[(NOV_3, "sonar")], by_key[(NOV_4, "sonar")]
    # Nov 3: a ($0.000000015) + b ($0.25) = $0.250000015, both before midnight UTC.
    assert nov_3["cost"] == Decimal("0.250000015") and nov_3["record_count"] == 2
    assert nov_3["superseded"] is True and nov_4["superseded"] is False
    # Each token type: (i + 1) × 100 + 1 plus (i + 1) × 100 + 2 = (i + 1) × 200 + 3.
    assert [nov_3[f] for f in TOKEN_FIELDS] == [(i + 1) * 200 + 3 for i in range(len(TOKEN_FIELDS))]
    # Nov 4 sonar: c ($1.5) + d (unpriced) + e (failed, so $0) = $1.5 over 3 records.
    assert nov_4["cost"] == Decimal("1.5") and nov_4["record_count"] == 3
    assert nov_4["failed_count"] == 1 and nov_4["unpriced_count"] == 1
    # d's unpriced tokens: input 100 + 4 and output (index 4) 500 + 4 = 608.
    assert nov_4["unpriced_tokens"] == 104 + 504
    assert by_key[(NOV_4, "pro")]["cost"] == Decimal(2)
