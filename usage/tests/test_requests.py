"""Per-request recording through request_events_record, one provider at a time.

Bodies are shaped like each provider's own response (ref §4-8); prices are rows made here.
Every expected figure is worked out by hand in the comment beside it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import time_machine
from django.db import connection

from providers.tests.factories import AccountFactory, provider
from usage.extraction import RequestUsage, extract_usage
from usage.models import DailyUsage, Price, RecordStatus, UsageRecord
from usage.services.prices import EPOCH
from usage.services.requests import RequestEvent, request_events_record

pytestmark = pytest.mark.django_db

D = Decimal
PER_M = D("0.000001")
AT = datetime(2026, 11, 15, 10, tzinfo=UTC)


def price(slug: str, model: str, **per_m) -> Price:
    """A price row; token prices given per million, other fields as they are."""
    values = {}
    for name, value in per_m.items():
        values[name] = D(value) * PER_M if name.endswith("_per_token") else D(value)
    return Price.objects.create(provider=provider(slug), model=model, valid_from=EPOCH, **values)


def ingest(account, kind: str, body: dict, request_id: str = "r1", **extra) -> UsageRecord:
    usage = extract_usage(kind, json.loads(json.dumps(body), parse_float=Decimal))
    event = RequestEvent(request_id=request_id, usage=usage, occurred_at=AT, **extra)
    with time_machine.travel("2026-11-15 12:00:00Z", tick=False):
        result = request_events_record(account=account, events=[event])
    assert result == {request_id: "created"}
    return UsageRecord.objects.get(account=account, request_id=request_id)


def test_it_prices_openai_with_cached_input_inside_prompt_tokens_and_reasoning_inside_output():
    account = AccountFactory(provider=provider("openai"))
    price(
        "openai",
        "gpt-4o",
        input_per_token="2.50",
        cache_read_per_token="1.25",
        output_per_token="10",
    )
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "gpt-4o-2024-08-06",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}],
        "usage": {
            "prompt_tokens": 1000,
            "completion_tokens": 500,
            "total_tokens": 1500,
            "prompt_tokens_details": {"cached_tokens": 400},
            "completion_tokens_details": {"reasoning_tokens": 200},
        },
    }
    record = ingest(account, "openai", body)
    assert (record.input_tokens, record.cache_read_tokens) == (600, 400)  # 1,000 − 400 cached
    assert (record.output_tokens, record.reasoning_tokens) == (500, 200)
    # 600 × $2.50/M + 400 × $1.25/M + 500 × $10/M = 0.0015 + 0.0005 + 0.005 = $0.007
    # (reasoning counted twice would give 0.009; cached at full price 0.0075)
    assert record.cost == D("0.007")


def test_it_prices_an_openai_responses_body():
    account = AccountFactory(provider=provider("openai"))
    price(
        "openai",
        "o4-mini",
        input_per_token="1.10",
        cache_read_per_token="0.275",
        output_per_token="4.40",
    )
    body = {
        "object": "response",
        "model": "o4-mini-2025-04-16",
        "usage": {
            "input_tokens": 2000,
            "input_tokens_details": {"cached_tokens": 1000},
            "output_tokens": 1000,
            "output_tokens_details": {"reasoning_tokens": 800},
        },
    }
    record = ingest(account, "openai", body)
    # 1,000 × $1.10/M + 1,000 × $0.275/M + 1,000 × $4.40/M = 0.0011 + 0.000275 + 0.0044
    assert record.cost == D("0.005775")


def test_it_prices_anthropic_with_cache_apart_and_5m_and_1h_writes_at_their_own_rates():
    account = AccountFactory(provider=provider("anthropic"))
    price(
        "anthropic",
        "claude-sonnet-4-5",
        input_per_token="3",
        cache_read_per_token="0.30",
        cache_write_per_token="3.75",
        cache_write_1h_per_token="6",
        output_per_token="15",
    )
    body = {
        "id": "msg_1",
        "type": "message",
        "model": "claude-sonnet-4-5-20250929",
        "content": [{"type": "text", "text": "hi"}],
        "usage": {
            "input_tokens": 100,
            "cache_read_input_tokens": 2000,
            "cache_creation_input_tokens": 1500,
            "cache_creation": {"ephemeral_5m_input_tokens": 1000, "ephemeral_1h_input_tokens": 500},
            "output_tokens": 300,
        },
    }
    record = ingest(account, "anthropic", body)
    assert (record.input_tokens, record.cache_read_tokens) == (100, 2000)  # input EXCLUDES cache
    assert (record.cache_write_tokens, record.cache_write_1h_tokens) == (1000, 500)
    # 100 × $3/M = 0.0003; 2,000 × $0.30/M = 0.0006; 1,000 × $3.75/M = 0.00375;
    # 500 × $6/M = 0.003; 300 × $15/M = 0.0045 → total $0.01215
    assert record.cost == D("0.01215")


def test_it_takes_perplexitys_own_total_cost_over_the_price_book():
    account = AccountFactory(provider=provider("perplexity"))
    price("perplexity", "sonar", input_per_token="1", output_per_token="1", search_low="0.005")
    body = {
        "id": "pplx-1",
        "model": "sonar",
        "usage": {
            "prompt_tokens": 10,
            "completion_tokens": 20,
            "search_context_size": "low",
            "cost": {
                "input_tokens_cost": 0.00001,
                "output_tokens_cost": 0.00002,
                "request_cost": 0.005,
                "total_cost": 0.00601,
            },
        },
    }
    record = ingest(account, "perplexity", body)
    # The book would say 10 × $1/M + 20 × $1/M + $0.005 = $0.00503; the provider's own
    # usage.cost.total_cost wins.
    assert record.cost == D("0.00601")  # the provider's figure, not 10 × $1/M + 20 × $1/M + 0.005


def test_it_prices_perplexity_without_a_cost_by_tokens_and_the_request_fee_for_its_context_size():
    account = AccountFactory(provider=provider("perplexity"))
    price(
        "perplexity",
        "sonar",
        input_per_token="1",
        output_per_token="1",
        search_low="0.005",
        search_medium="0.008",
        search_high="0.012",
    )
    body = {
        "model": "sonar",
        "usage": {
            "prompt_tokens": 1000,
            "completion_tokens": 2000,
            "search_context_size": "medium",
        },
    }
    record = ingest(account, "perplexity", body)
    # 1,000 × $1/M + 2,000 × $1/M + one medium-context request fee $0.008 = $0.011
    assert record.cost == D("0.011")
    del body["usage"]["search_context_size"]
    record = ingest(account, "perplexity", body, request_id="r2")
    # no size reported: low is the default → 0.001 + 0.002 + 0.005 = $0.008
    assert record.cost == D("0.008")


def test_it_prices_groq_by_tokens_also_from_a_stream_chunk_x_groq_usage():
    account = AccountFactory(provider=provider("groq"))
    price("groq", "llama-3.1-8b-instant", input_per_token="0.05", output_per_token="0.08")
    body = {
        "id": "chatcmpl-g",
        "model": "llama-3.1-8b-instant",
        "usage": {"prompt_tokens": 2000, "completion_tokens": 1000, "total_tokens": 3000},
        "x_groq": {"id": "req_01"},
    }
    record = ingest(account, "groq", body)
    # 2,000 × $0.05/M + 1,000 × $0.08/M = 0.0001 + 0.00008 = $0.00018
    assert record.cost == D("0.00018")
    chunk = {
        "object": "chat.completion.chunk",
        "model": "llama-3.1-8b-instant",
        "choices": [{"delta": {}, "finish_reason": "stop"}],
        "x_groq": {"id": "req_02", "usage": {"prompt_tokens": 4000, "completion_tokens": 500}},
    }
    record = ingest(account, "groq", chunk, request_id="r2")
    # 4,000 × $0.05/M + 500 × $0.08/M = 0.0002 + 0.00004 = $0.00024
    assert record.cost == D("0.00024")


def test_it_records_ollama_at_zero_by_default_and_at_the_compute_rate_when_set():
    body = {
        "model": "llama3.2",
        "done": True,
        "prompt_eval_count": 26,
        "eval_count": 298,
        "total_duration": 5_000_000_000,
    }
    free = AccountFactory(provider=provider("ollama"))
    record = ingest(free, "ollama", body)
    assert record.cost == D("0")  # local and free: a real $0, not unpriced
    assert record.cost is not None
    paid = AccountFactory(provider=provider("ollama"), config={"compute_rate_per_hour": "0.36"})
    record = ingest(paid, "ollama", body)
    # $0.36/hour × 5 s = 0.36 × 5 / 3,600 = $0.0005
    assert record.cost == D("0.0005")


def test_it_stores_an_unknown_model_as_unpriced_and_counts_it_in_the_roll_up():
    account = AccountFactory(provider=provider("openai"))
    body = {"model": "gpt-9-preview", "usage": {"prompt_tokens": 700, "completion_tokens": 300}}
    record = ingest(account, "openai", body)
    assert record.cost is None  # never $0
    day = DailyUsage.objects.get(account=account, model="gpt-9-preview")
    assert (day.cost, day.unpriced_count, day.unpriced_tokens) == (0, 1, 1000)  # 700 + 300


def test_it_records_a_failed_request_at_zero():
    account = AccountFactory(provider=provider("openai"))
    price("openai", "gpt-4o", input_per_token="2.50", output_per_token="10")
    usage = RequestUsage(model="gpt-4o", input_tokens=100, found=True)
    event = RequestEvent(request_id="f", usage=usage, occurred_at=AT, status=RecordStatus.FAILED)
    request_events_record(account=account, events=[event])
    day = DailyUsage.objects.get(account=account)
    assert UsageRecord.objects.get().cost == 0 and day.failed_count == 1


def test_it_stores_a_request_id_once_and_adds_to_the_roll_up_once():
    account = AccountFactory(provider=provider("openai"))
    price("openai", "gpt-4o", input_per_token="2.50", output_per_token="10")
    events = [
        RequestEvent(
            request_id=f"r{i}",
            occurred_at=AT,
            usage=RequestUsage(model="gpt-4o", input_tokens=1000, found=True),
        )
        for i in range(3)
    ]
    first = request_events_record(account=account, events=[*events, events[0]])
    assert first == {"r0": "created", "r1": "created", "r2": "created"}
    second = request_events_record(account=account, events=events)
    assert set(second.values()) == {"duplicate"}
    assert UsageRecord.objects.count() == 3
    day = DailyUsage.objects.get()
    # 3 × 1,000 × $2.50/M = $0.0075, added once
    assert (day.cost, day.record_count, day.input_tokens) == (D("0.0075"), 3, 3000)


def test_it_rejects_only_an_event_whose_cost_cannot_be_stored():
    account = AccountFactory(provider=provider("openai"))
    price("openai", "silly", input_per_token="1000000000000")  # $1e12 per 1M → $1e6 a token
    price("openai", "gpt-4o", input_per_token="2.50")
    events = [
        RequestEvent(
            request_id="big",
            occurred_at=AT,
            usage=RequestUsage(model="silly", input_tokens=10**12, found=True),
        ),
        RequestEvent(
            request_id="ok",
            occurred_at=AT,
            usage=RequestUsage(model="gpt-4o", input_tokens=1000, found=True),
        ),
    ]
    reasons: dict = {}
    result = request_events_record(account=account, events=events, reasons=reasons)
    assert result == {"big": "rejected", "ok": "created"}
    assert reasons["big"].startswith("cost:")
    assert UsageRecord.objects.get().cost == D("0.0025")  # 1,000 × $2.50/M


def test_it_leaves_a_cut_off_call_without_usage_unpriced_even_for_free_ollama():
    account = AccountFactory(provider=provider("ollama"))
    event = RequestEvent(
        request_id="cut", usage=RequestUsage(model="llama3.2"), status=RecordStatus.INCOMPLETE
    )
    request_events_record(account=account, events=[event])
    record = UsageRecord.objects.get()
    # No usage arrived: the cost is unknown (NULL), not Ollama's $0.
    assert record.status == RecordStatus.INCOMPLETE and record.cost is None
    assert DailyUsage.objects.get().unpriced_count == 1


def test_it_keeps_a_cut_off_call_without_usage_unpriced_through_a_reprice():
    from datetime import date

    from usage.services.prices import reprice_estimated

    account = AccountFactory(provider=provider("ollama"))
    event = RequestEvent(
        request_id="cut", usage=RequestUsage(model="llama3.2"), status=RecordStatus.INCOMPLETE
    )
    request_events_record(account=account, events=[event])
    reprice_estimated(since=date(2000, 1, 1))
    # Ollama is free, but a call whose usage never arrived stays unknown, not $0.
    assert UsageRecord.objects.get().cost is None


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_record_for_an_account_deleted_meanwhile_is_refused_with_its_roll_up():
    # Usage records carry no FK constraints in the database; the roll-up row written with
    # them (same statement on PostgreSQL, same transaction on SQLite) does, so a write for an
    # account that disappeared after its key was read leaves nothing behind.
    from django.db import IntegrityError

    from providers.models import ProviderAccount

    account = AccountFactory(provider=provider("groq"))
    stale = ProviderAccount.objects.select_related("provider").get(pk=account.pk)
    account.delete()
    event = RequestEvent(request_id="late", usage=RequestUsage(model="m", input_tokens=5))
    with pytest.raises(IntegrityError):
        request_events_record(account=stale, events=[event])
    assert not UsageRecord.objects.filter(account_id=stale.pk).exists()
    assert not DailyUsage.objects.filter(account_id=stale.pk).exists()


def test_deleting_an_account_takes_its_usage_and_roll_ups_and_nothing_else():
    from providers.services import account_delete

    gone, kept = (
        AccountFactory(provider=provider("groq")),
        AccountFactory(provider=provider("groq")),
    )
    for account in (gone, kept):
        event = RequestEvent(request_id="r", usage=RequestUsage(model="m", input_tokens=5))
        assert request_events_record(account=account, events=[event]) == {"r": "created"}
    account_delete(account=gone)  # on PostgreSQL it locks the account row first
    assert not UsageRecord.objects.filter(account_id=gone.pk).exists()
    assert not DailyUsage.objects.filter(account_id=gone.pk).exists()
    assert UsageRecord.objects.filter(account_id=kept.pk).count() == 1
    assert DailyUsage.objects.filter(account_id=kept.pk).count() == 1


def _synchronous_commit() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        return cursor.fetchone()[0]


def unflushed_wal_after_writes(account, *, durable: bool, writes: int = 5) -> list[int]:
    """Bytes of WAL written but not yet flushed to disk right after each of `writes` writes.

    A commit that waits for the disk leaves nothing behind it; one that does not leaves its
    own WAL until the WAL writer's next round (every 200 ms), so back-to-back writes show it.
    """
    unflushed = []
    for n in range(writes):
        event = RequestEvent(request_id=f"w{n}", usage=RequestUsage(model="m", input_tokens=5))
        request_events_record(account=account, events=[event], durable=durable)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_current_wal_insert_lsn() - pg_current_wal_flush_lsn()")
            unflushed.append(int(cursor.fetchone()[0]))
    return unflushed


postgresql_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="synchronous_commit is PostgreSQL's"
)


@postgresql_only
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_write_may_commit_without_waiting_for_the_disk_and_only_that_write():
    # Another session's durable commit at the same moment (the other test worker, autovacuum)
    # flushes our WAL with its own, hiding the gap: a disturbed measurement is taken again, up
    # to three times, each on fresh rows, as the durable half below does.
    for _ in range(3):
        account = AccountFactory(provider=provider("groq"))
        eager = unflushed_wal_after_writes(account, durable=False)
        assert UsageRecord.objects.filter(account=account).count() == 5
        if sum(gap > 0 for gap in eager) >= 4:
            break
    assert sum(gap > 0 for gap in eager) >= 4, eager  # visible at once, on disk a little later
    # The setting ended with the statement's own commit: the connection is as it was.
    assert _synchronous_commit() == "on"

    # A durable write leaves no WAL of its own unflushed. WAL that other sessions write at the
    # same moment (autovacuum, another test run on the server) shows up too, so a measurement
    # disturbed by them is taken again, up to three times, each on fresh rows.
    for _ in range(3):
        durable = unflushed_wal_after_writes(
            AccountFactory(provider=provider("groq")), durable=True
        )
        if sum(gap == 0 for gap in durable) >= 4:
            break
    assert sum(gap == 0 for gap in durable) >= 4, durable


@postgresql_only
def test_inside_a_transaction_a_write_never_changes_how_it_commits():
    # This test runs inside a transaction: a setting the write made would last until its end
    # and cover every other write in it, so the write makes none.
    account = AccountFactory(provider=provider("groq"))
    event = RequestEvent(request_id="r", usage=RequestUsage(model="m", input_tokens=5))
    assert request_events_record(account=account, events=[event], durable=False) == {"r": "created"}
    assert _synchronous_commit() == "on"
