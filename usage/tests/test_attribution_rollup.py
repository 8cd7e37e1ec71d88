"""The attribution roll-up (DailyAttribution: account × UTC day × source × dimension (the
project, user and feature tags, the ingest key) × value) is written by the same generated
writers as DailyUsage, on every write path; after each, both equal a GROUP BY over the usage
records (rollup_check), worked out again in Python, superseded flags included, and each
dimension's rows sum to DailyUsage's totals."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
import time_machine
from django.core.management import call_command

from accounts.tests.factories import UserFactory
from providers.adapters.base import UsageLine
from providers.services import account_delete, ingest_key_create
from providers.tests.factories import AccountFactory, provider
from usage.extraction import RequestUsage
from usage.ingest_apis import ingest_items
from usage.models import DailyAttribution, Price, RecordStatus, Source, UsageRecord
from usage.services.prices import EPOCH, reprice_estimated
from usage.services.reconciliation import invoice_set, true_up_book
from usage.services.records import (
    manual_entry_create,
    manual_entry_delete,
    manual_entry_update,
    usage_lines_replace_window,
)
from usage.services.requests import RequestEvent, request_events_record
from usage.tests.rollup_check import assert_rollups_match_records

pytestmark = pytest.mark.django_db

NOV_3, NOV_4, NOV_5 = date(2026, 11, 3), date(2026, 11, 4), date(2026, 11, 5)
MILLIONTH = Decimal("0.000001")
# Quotes, backslashes and non-ASCII survive the JSON path of either database unchanged.
ODD = 'Zürich "night" \\ run'


def _k(account, day: date, dimension: str, value, source: str = "estimated") -> tuple:
    """A row's key in assert_rollups_match_records' answer (a key id as the text stored)."""
    return (account.pk, day, source, dimension, str(value))


def _item(request_id: str, *, tokens: int, at: str = "2026-11-03T10:00:00Z", **tags) -> dict:
    return {
        "request_id": request_id,
        "occurred_at": at,
        "model": "gpt-4o",
        "usage": {"prompt_tokens": tokens, "completion_tokens": 0},
        "tags": tags,
    }


def _openai_account():
    # $1 per million input tokens: 1,000 tokens cost $0.001.
    Price.objects.create(
        provider=provider("openai"), model="gpt-4o", valid_from=EPOCH, input_per_token=MILLIONTH
    )
    return AccountFactory(provider=provider("openai"))


def _estimate(account, request_id: str, day: date, cost: str, **tags) -> None:
    # Perplexity prices a request itself (usage.cost), so no price book is needed.
    usage = RequestUsage(model="sonar", provider_cost=Decimal(cost), found=True, input_tokens=10)
    at = datetime(day.year, day.month, day.day, 9, tzinfo=UTC)
    event = RequestEvent(request_id=request_id, usage=usage, occurred_at=at, tags=tags)
    request_events_record(account=account, events=[event])


def _official(account, day: date, cost: str | None) -> None:
    lines = (
        []
        if cost is None
        else [UsageLine(day=day, model="sonar", line_item="x", cost=Decimal(cost))]
    )
    usage_lines_replace_window(
        account=account, start=day, end=day.replace(day=day.day + 1), lines=lines
    )


def test_it_attributes_ingested_events_to_their_tags_and_ingest_key_run_twice():
    account = _openai_account()
    _, key_a = ingest_key_create(account=account, name="a")
    _, key_b = ingest_key_create(account=account, name="b")
    batch_a = [
        _item("a1", tokens=1000, project="apollo", user="ada", feature="search"),
        _item("a2", tokens=2000, project="apollo", user="ada", feature="search"),
        _item("a3", tokens=4000, project="apollo"),  # no user, no feature
        _item("a4", tokens=8000, at="2026-11-04T00:00:00Z", project=ODD, user=ODD),
        _item("a5", tokens=16000),  # no tags at all
    ]
    batch_b = [_item("b1", tokens=32000, project="apollo", user="ada", feature="search")]
    for _ in range(2):  # the second time every event is a duplicate: nothing changes
        ingest_items(key=key_a, items=batch_a)
        ingest_items(key=key_b, items=batch_b)
        rows = assert_rollups_match_records()
        # Per dimension a value and '' on Nov 3 (8 rows), one value each on Nov 4 (4 rows).
        assert len(rows) == 12

    assert set(UsageRecord.objects.values_list("ingest_key_id", flat=True)) == {
        key_a.pk,
        key_b.pk,
    }
    apollo = rows[_k(account, NOV_3, "project", "apollo")]
    # a1 + a2 + a3 + b1: 39,000 tokens × $1/M = $0.039, four records, whatever their key.
    assert apollo["cost"] == Decimal("0.039") and apollo["record_count"] == 4
    # a1 + a2 + b1: 35,000 tokens × $1/M = $0.035.
    assert rows[_k(account, NOV_3, "feature", "search")]["cost"] == Decimal("0.035")
    # a1 + a2 + a3 + a5: 23,000 × $1/M = $0.023; b1 through key b: 32,000 × $1/M = $0.032.
    assert rows[_k(account, NOV_3, "ingest_key", key_a.pk)]["cost"] == Decimal("0.023")
    assert rows[_k(account, NOV_3, "ingest_key", key_b.pk)]["cost"] == Decimal("0.032")
    assert rows[_k(account, NOV_3, "user", "")]["input_tokens"] == 4000 + 16000  # a3, a5
    assert rows[_k(account, NOV_4, "project", ODD)]["input_tokens"] == 8000
    assert rows[_k(account, NOV_4, "user", ODD)]["input_tokens"] == 8000
    assert rows[_k(account, NOV_4, "feature", "")]["input_tokens"] == 8000


def test_it_attributes_events_recorded_without_a_key_to_no_key():
    account = AccountFactory(provider=provider("perplexity"))
    _estimate(account, "r1", NOV_3, "0.5", project="p")
    _estimate(account, "r2", NOV_3, "0.25", project="p")
    rows = assert_rollups_match_records()
    assert set(rows) == {
        _k(account, NOV_3, "project", "p"),
        _k(account, NOV_3, "user", ""),
        _k(account, NOV_3, "feature", ""),
        _k(account, NOV_3, "ingest_key", ""),
    }
    # $0.5 + $0.25 = $0.75
    assert rows[_k(account, NOV_3, "ingest_key", "")]["cost"] == Decimal("0.75")


def test_it_flags_estimated_attribution_when_official_figures_land_and_unflags_when_they_go():
    account = AccountFactory(provider=provider("perplexity"))
    _estimate(account, "a", NOV_3, "7", project="apollo")
    _estimate(account, "b", NOV_3, "1", project="zeus", feature="chat")
    _estimate(account, "c", NOV_4, "2", project="apollo")
    for _ in range(2):  # the same sync twice leaves the same rows
        _official(account, NOV_3, "6")
        rows = assert_rollups_match_records()
    flagged = set(
        DailyAttribution.objects.filter(superseded=True, dimension="project").values_list(
            "day", "value"
        )
    )
    assert flagged == {(NOV_3, "apollo"), (NOV_3, "zeus")}
    # Nov 3's estimates in every dimension: projects apollo, zeus; features '', chat; user '';
    # key ''.
    assert DailyAttribution.objects.filter(superseded=True).count() == 2 + 2 + 1 + 1
    # An estimate arriving after the official figures is born superseded.
    _estimate(account, "d", NOV_3, "3", project="hermes")
    rows = assert_rollups_match_records()
    assert rows[_k(account, NOV_3, "project", "hermes")]["superseded"] is True
    _official(account, NOV_3, None)  # the provider no longer reports that day
    assert_rollups_match_records()
    assert not DailyAttribution.objects.filter(superseded=True).exists()
    assert not DailyAttribution.objects.filter(source=Source.OFFICIAL).exists()


def test_it_rebuilds_attribution_as_manual_entries_are_made_changed_moved_and_deleted():
    owner = UserFactory()
    account = AccountFactory(workspace=owner.personal_workspace, provider=provider("copilot"))
    other = AccountFactory(workspace=owner.personal_workspace, provider=provider("copilot"))
    entry = manual_entry_create(
        account=account, day=NOV_3, description="seats", cost=Decimal("228"), tags={"project": "x"}
    )
    manual_entry_create(
        account=account, day=NOV_3, description="more", cost=Decimal("2"), tags={"project": "x"}
    )
    rows = assert_rollups_match_records()
    # $228 + $2 = $230 for project x on Nov 3.
    assert rows[_k(account, NOV_3, "project", "x", "manual")]["cost"] == Decimal("230")
    for _ in range(2):
        entry = manual_entry_update(record=entry, account=account, day=NOV_4, cost=Decimal("19"))
        assert_rollups_match_records()
    for _ in range(2):
        entry = manual_entry_update(record=entry, account=other, day=NOV_4, cost=Decimal("19"))
        rows = assert_rollups_match_records()
    assert rows[_k(other, NOV_4, "project", "x", "manual")]["cost"] == Decimal("19")
    for _ in range(2):
        manual_entry_delete(record=entry)
        assert_rollups_match_records()
    assert not DailyAttribution.objects.filter(account=other).exists()


@time_machine.travel(datetime(2026, 11, 20, 12, tzinfo=UTC), tick=False)
def test_it_attributes_a_true_up_and_replaces_it_when_booked_again():
    account = AccountFactory(provider=provider("perplexity"))
    _estimate(account, "a", NOV_3, "7", project="apollo")
    invoice_set(account=account, month_start=date(2026, 11, 1), amount=Decimal("10"))
    for _ in range(2):
        true_up_book(account=account, month_start=date(2026, 11, 1), today=date(2026, 11, 20))
        rows = assert_rollups_match_records()
    # Invoice $10 − counted $7 = $3, booked on the 20th without attribution tags.
    assert rows[_k(account, date(2026, 11, 20), "project", "", "manual")]["cost"] == Decimal("3")


def test_it_reprices_attribution_with_the_records():
    account = _openai_account()
    _, key = ingest_key_create(account=account, name="k")
    ingest_items(key=key, items=[_item("r", tokens=1000, project="apollo")])
    Price.objects.filter(model="gpt-4o").update(input_per_token=3 * MILLIONTH)
    for _ in range(2):
        reprice_estimated(since=NOV_3)
        rows = assert_rollups_match_records()
    # 1,000 tokens × $3/M = $0.003 (was $0.001).
    assert rows[_k(account, NOV_3, "project", "apollo")]["cost"] == Decimal("0.003")
    assert rows[_k(account, NOV_3, "ingest_key", key.pk)]["cost"] == Decimal("0.003")


def test_deleting_an_account_takes_its_attribution_and_nothing_else():
    gone = AccountFactory(provider=provider("perplexity"))
    kept = AccountFactory(provider=provider("perplexity"))
    for account in (gone, kept):
        _estimate(account, "r", NOV_3, "1", project="p")
    account_delete(account=gone)
    assert not DailyAttribution.objects.filter(account_id=gone.pk).exists()
    assert DailyAttribution.objects.filter(account_id=kept.pk).count() == 4  # one per dimension
    assert_rollups_match_records()


@time_machine.travel(datetime(2026, 11, 20, 12, tzinfo=UTC), tick=False)
def test_seeding_the_demo_twice_leaves_attribution_equal_to_the_records():
    UserFactory(username="alice")
    call_command("seed_demo", "--user", "alice", "--days", "5")
    first = assert_rollups_match_records()
    assert any(key[3] == "project" and key[4] for key in first)  # the demo tags projects
    call_command("seed_demo", "--user", "alice", "--days", "5")
    again = assert_rollups_match_records()
    assert len(again) == len(first)


def test_the_proxy_path_keeps_the_key_even_when_it_was_revoked_during_the_call():
    from providers.proxy.recording import proxy_call_record
    from providers.services import ingest_key_revoke

    account = AccountFactory(provider=provider("groq"))
    _, key = ingest_key_create(account=account, name="k")
    ingest_key_revoke(key=key)  # after the call went out: the provider bills it all the same
    proxy_call_record(
        account=account,
        usage=RequestUsage(model="llama", input_tokens=5),
        status=RecordStatus.OK,
        occurred_at=datetime(2026, 11, 3, 9, tzinfo=UTC),
        tags={"feature": "chat"},
        ingest_key_id=key.pk,
    )
    record = UsageRecord.objects.get(account=account)
    assert record.ingest_key_id == key.pk
    rows = assert_rollups_match_records()
    assert set(rows) == {
        _k(account, NOV_3, "project", ""),
        _k(account, NOV_3, "user", ""),
        _k(account, NOV_3, "feature", "chat"),
        _k(account, NOV_3, "ingest_key", key.pk),
    }


def test_the_migration_fills_the_attribution_of_records_stored_before_it():
    import importlib

    migration = importlib.import_module("usage.migrations.0010_attribution_by_dimension")
    account = AccountFactory(provider=provider("perplexity"))
    _estimate(account, "a", NOV_3, "7", project="apollo", user="ada")
    _estimate(account, "b", NOV_4, "2", feature="chat")
    _official(account, NOV_3, "6")
    manual_entry_create(
        account=account, day=NOV_5, description="x", cost=Decimal("1"), tags={"project": "p"}
    )
    before = assert_rollups_match_records()
    DailyAttribution.objects.all().delete()  # as 0010 leaves it before filling it
    migration.backfill(None, None)
    assert assert_rollups_match_records() == before
    assert before[_k(account, NOV_3, "user", "ada")]["superseded"] is True
