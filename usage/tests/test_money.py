"""Money is exact: Decimal end to end, exact sums on SQLite and PostgreSQL, upserts not adds."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from django.db import connection

from providers.adapters.base import UsageLine
from providers.tests.factories import AccountFactory
from usage.db import MoneySum
from usage.models import DailyUsage, Granularity, Source, UsageRecord
from usage.services.records import usage_lines_replace_window
from usage.services.rollup import rollup_add, rollup_rebuild

pytestmark = pytest.mark.django_db

TINY = Decimal("0.00000015")  # one gpt-4o-mini input token at $0.15 per million


def _insert_tiny_records(account, n: int) -> None:
    """n request rows of $0.00000015 each, generated inside the database (fast on both)."""
    fields = {
        "account_id": account.pk,
        "provider_id": account.provider_id,
        "model": "'gpt-4o-mini'",
        "line_item": "''",
        "description": "''",
        "bucket_start": "'2026-11-03 12:00:00+00:00'",
        "granularity": "'event'",
        "input_tokens": 1,
        "cache_read_tokens": 0,
        "cache_write_tokens": 0,
        "cache_write_1h_tokens": 0,
        "output_tokens": 0,
        "reasoning_tokens": 0,
        "request_count": 1,
        "seats": 0,
        "search_queries": 0,
        "images": 0,
        "audio_seconds": 0,
        "credits": 0,
        "cost": "'0.00000015'",
        "currency": "'USD'",
        "source": "'estimated'",
        "status": "'ok'",
        "tags": "'{}'",
        "raw": "'{}'",
        "created_at": "'2026-11-03 12:00:00+00:00'",
        "updated_at": "'2026-11-03 12:00:00+00:00'",
    }
    columns = ", ".join(["natural_key", "request_id", *fields])
    values = ", ".join(str(v) for v in fields.values())
    if connection.vendor == "postgresql":
        sql = (
            f"INSERT INTO usage_usagerecord ({columns}) SELECT 'req:' || x, x::text, {values} "
            f"FROM generate_series(1, {n}) AS x"
        )
    else:
        sql = (
            f"INSERT INTO usage_usagerecord ({columns}) WITH RECURSIVE seq(x) AS "
            f"(SELECT 1 UNION ALL SELECT x + 1 FROM seq WHERE x < {n}) "
            f"SELECT 'req:' || x, CAST(x AS TEXT), {values} FROM seq"
        )
    with connection.cursor() as cursor:
        cursor.execute(sql)


@pytest.mark.slow
def test_it_sums_a_million_tiny_costs_to_exactly_fifteen_cents():
    account = AccountFactory()
    _insert_tiny_records(account, 1_000_000)
    assert UsageRecord.objects.count() == 1_000_000
    # 1,000,000 × $0.00000015 = $0.15 exactly (SQLite's float SUM gives 0.15000000000209981).
    assert UsageRecord.objects.aggregate(t=MoneySum("cost"))["t"] == Decimal("0.15")
    rollup_rebuild(account_id=account.pk, days=[date(2026, 11, 3)], source=Source.ESTIMATED)
    rebuilt = DailyUsage.objects.get(account=account)
    assert rebuilt.cost == Decimal("0.15") and rebuilt.input_tokens == 1_000_000
    assert rebuilt.record_count == 1_000_000


def test_it_adds_onto_the_roll_up_exactly_batch_after_batch():
    account = AccountFactory()
    at = datetime(2026, 11, 3, 12, tzinfo=UTC)
    for b in range(1000):
        records = [
            UsageRecord(
                account=account,
                provider_id=account.provider_id,
                model="gpt-4o-mini",
                natural_key=f"req:{b}-{i}",
                bucket_start=at,
                input_tokens=1,
                cost=TINY,
                granularity=Granularity.EVENT,
                source=Source.ESTIMATED,
            )
            for i in range(10)
        ]
        rollup_add(records)  # 1,000 additive upserts of 10 × $0.00000015 = $0.0000015
    # 1,000 × $0.0000015 = $0.0015 exactly; float addition would drift in the last places.
    rollup = DailyUsage.objects.get()
    assert rollup.cost == Decimal("0.0015") and rollup.record_count == 10_000


def test_it_keeps_twelve_decimal_places_per_record():
    account = AccountFactory()
    record = UsageRecord.objects.create(
        account=account,
        provider_id=account.provider_id,
        natural_key="req:x",
        bucket_start=datetime(2026, 11, 3, tzinfo=UTC),
        granularity=Granularity.EVENT,
        cost=Decimal("0.000000075"),
        source=Source.ESTIMATED,
    )
    record.refresh_from_db()
    assert record.cost == Decimal("0.000000075")  # one cached gpt-4o-mini token


def test_it_keeps_an_unpriced_cost_null_not_zero():
    account = AccountFactory()
    record = UsageRecord.objects.create(
        account=account,
        provider_id=account.provider_id,
        natural_key="req:y",
        bucket_start=datetime(2026, 11, 3, tzinfo=UTC),
        granularity=Granularity.EVENT,
        cost=None,
        input_tokens=10,
        output_tokens=5,
        source=Source.ESTIMATED,
    )
    rollup_add([record])
    rollup = DailyUsage.objects.get()
    assert rollup.unpriced_count == 1 and rollup.unpriced_tokens == 15
    assert rollup.cost == 0  # priced total; the unpriced request is counted apart, not as $0
    assert UsageRecord.objects.get().cost is None


def _line(day: date, cost: str, tokens: int = 100) -> UsageLine:
    return UsageLine(
        day=day, model="gpt-4o", line_item="gpt-4o, input", input_tokens=tokens, cost=Decimal(cost)
    )


def test_it_updates_one_row_when_the_same_natural_key_arrives_again():
    account = AccountFactory()
    day = date(2026, 11, 3)
    first = usage_lines_replace_window(
        account=account, start=day, end=date(2026, 11, 4), lines=[_line(day, "1.10")]
    )
    again = usage_lines_replace_window(
        account=account, start=day, end=date(2026, 11, 4), lines=[_line(day, "1.10")]
    )
    revised = usage_lines_replace_window(
        account=account, start=day, end=date(2026, 11, 4), lines=[_line(day, "1.25", tokens=120)]
    )
    assert (first.created, again.created, again.updated) == (1, 0, 0)
    assert (revised.created, revised.updated) == (0, 1)
    record = UsageRecord.objects.get()  # still one row
    # Replaced with the provider's new value ($1.25), never added ($1.10 + $1.25).
    assert record.cost == Decimal("1.25") and record.input_tokens == 120
    assert DailyUsage.objects.get().cost == Decimal("1.25")


def test_it_enforces_the_natural_key_in_the_database():
    from django.db import IntegrityError, transaction

    from usage.models import RequestKey

    account = AccountFactory()
    fields = dict(
        account=account,
        provider_id=account.provider_id,
        natural_key="day:2026-11-03|gpt-4o|gpt-4o",
        bucket_start=datetime(2026, 11, 3, tzinfo=UTC),
        granularity=Granularity.DAY,
        source=Source.OFFICIAL,
    )
    UsageRecord.objects.create(**fields)
    with pytest.raises(IntegrityError), transaction.atomic():
        UsageRecord.objects.create(**fields)
    # The same key under another account is a different thing.
    UsageRecord.objects.create(**{**fields, "account": AccountFactory()})
    assert UsageRecord.objects.count() == 2
    # A request's key is unique in RequestKey (records are partitioned by month on
    # PostgreSQL, where a unique index over them would have to include the month).
    key = dict(account=account, natural_key="req:dup", bucket_start=fields["bucket_start"])
    RequestKey.objects.create(**key)
    with pytest.raises(IntegrityError), transaction.atomic():
        RequestKey.objects.create(**{**key, "bucket_start": datetime(2026, 12, 3, tzinfo=UTC)})


def test_it_formats_money_for_display_without_hiding_tiny_amounts():
    from usage.templatetags.money import money

    assert money(Decimal("1234.565")) == "$1,234.57"
    assert money(Decimal("0.00002")) == "$0.00002"  # not $0.00
    assert money(None) == "unpriced"
    assert money(Decimal("0")) == "$0.00"
