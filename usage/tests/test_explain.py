"""Explain a cost (issue 12 point 4): a record's page and API object show the lines its cost is
the sum of, the price row used, or why it is unpriced; records go in by the real ingestion path."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
import time_machine
from django.utils.html import escape

from accounts.tests.factories import UserFactory
from costtracker.api import is_money_str
from providers.tests.factories import AccountFactory, provider
from usage.explain import usage_record_explain
from usage.extraction import RequestUsage, extract_usage
from usage.models import Granularity, Price, RecordStatus, Source, UsageRecord
from usage.pricing import Rule, costing_for
from usage.services.prices import EPOCH, reprice_estimated
from usage.services.records import manual_entry_create
from usage.services.requests import RequestEvent, request_events_record

pytestmark = pytest.mark.django_db

D = Decimal
PER_M = D("0.000001")
AT = datetime(2026, 11, 15, 10, tzinfo=UTC)


def price(slug: str, model: str, **per_m) -> Price:
    """A price row; token prices given per million, other fields as they are."""
    values = {}
    for name, value in per_m.items():
        values[name] = D(value) * PER_M if "_per_token" in name else D(value)
    return Price.objects.create(provider=provider(slug), model=model, valid_from=EPOCH, **values)


def ingest(account, kind: str, body: dict, request_id: str = "r1", **extra) -> UsageRecord:
    usage = extract_usage(kind, json.loads(json.dumps(body), parse_float=Decimal))
    return record_usage(account, usage, request_id, **extra)


def record_usage(account, usage: RequestUsage, request_id: str = "r1", **extra) -> UsageRecord:
    event = RequestEvent(request_id=request_id, usage=usage, occurred_at=AT, **extra)
    with time_machine.travel("2026-11-15 12:00:00Z", tick=False):
        result = request_events_record(account=account, events=[event])
    assert result == {request_id: "created"}
    return UsageRecord.objects.select_related("account", "provider").get(
        account=account, request_id=request_id
    )


def openai_body(model: str, prompt: int, completion: int, cached: int = 0, reasoning: int = 0):
    return {
        "model": model,
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "prompt_tokens_details": {"cached_tokens": cached},
            "completion_tokens_details": {"reasoning_tokens": reasoning},
        },
    }


def assert_lines_add_up(record: UsageRecord):
    """The shown lines sum to the stored cost exactly, and today's rule gives it again."""
    e = usage_record_explain(record=record)
    assert sum((line.amount for line in e.lines), D(0)) == record.cost
    assert e.lines_total == record.cost == e.current_cost
    assert e.matches_current
    return e


def test_it_shows_the_arithmetic_of_a_cached_request():
    account = AccountFactory(provider=provider("openai"))
    row = price(
        "openai",
        "gpt-4o-mini",
        input_per_token="0.15",
        cache_read_per_token="0.075",
        output_per_token="0.60",
    )
    record = ingest(account, "openai", openai_body("gpt-4o-mini", 1200, 300, cached=1000))
    # (1,200 − 1,000) × $0.15/M + 1,000 × $0.075/M + 300 × $0.60/M
    # = 0.00003 + 0.000075 + 0.00018 = $0.000285
    assert record.cost == D("0.000285")
    e = assert_lines_add_up(record)
    assert e.rule == Rule.PRICE_BOOK
    assert [(ln.category, ln.count, ln.amount) for ln in e.lines] == [
        ("input", 200, D("0.00003")),
        ("cache_read", 1000, D("0.000075")),
        ("output", 300, D("0.00018")),
    ]
    assert e.arithmetic == "200 × $0.15/M + 1,000 × $0.075/M + 300 × $0.6/M = $0.000285"
    assert e.price_row.id == row.pk and e.price_row.origin == Price.Origin.ADMIN
    assert e.price_row.valid_from == EPOCH and e.price_row.valid_to is None
    assert not e.price_row.long_context_applied
    assert e.reprice_command is None and e.add_price_url is None


def test_it_shows_the_long_context_tier_with_cache_reads():
    account = AccountFactory(provider=provider("openai"))
    price(
        "openai",
        "gpt-long",
        input_per_token="1.25",
        cache_read_per_token="0.125",
        output_per_token="10",
        long_context_threshold="200000",
        input_per_token_long="2.50",
        cache_read_per_token_long="0.25",
        output_per_token_long="15",
    )
    record = ingest(account, "openai", openai_body("gpt-long", 250_000, 1000, cached=50_000))
    # Prompt 250,000 > 200,000: every token category at its long rate.
    # 200,000 × $2.50/M + 50,000 × $0.25/M + 1,000 × $15/M = 0.5 + 0.0125 + 0.015 = $0.5275
    assert record.cost == D("0.5275")
    e = assert_lines_add_up(record)
    assert e.arithmetic == "200,000 × $2.5/M + 50,000 × $0.25/M + 1,000 × $15/M = $0.5275"
    assert e.price_row.long_context_applied and e.price_row.long_context_threshold == 200_000
    assert any("250,000 tokens incl. cached" in note for note in e.notes)


def test_it_shows_reasoning_priced_apart_and_cache_writes():
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
        "type": "message",
        "model": "claude-sonnet-4-5-20250929",
        "usage": {
            "input_tokens": 100,
            "cache_read_input_tokens": 2000,
            "cache_creation_input_tokens": 1500,
            "cache_creation": {"ephemeral_5m_input_tokens": 1000, "ephemeral_1h_input_tokens": 500},
            "output_tokens": 300,
        },
    }
    record = ingest(account, "anthropic", body)
    # 100 × $3/M + 2,000 × $0.30/M + 1,000 × $3.75/M + 500 × $6/M + 300 × $15/M
    # = 0.0003 + 0.0006 + 0.00375 + 0.003 + 0.0045 = $0.01215
    assert record.cost == D("0.01215")
    e = assert_lines_add_up(record)
    assert [ln.label for ln in e.lines] == [
        "Uncached input tokens",
        "Cache reads",
        "Cache writes (5 min)",
        "Cache writes (1 h)",
        "Output tokens (incl. reasoning)",
    ]

    other = AccountFactory(provider=provider("openai"))
    price("openai", "o-think", input_per_token="1", output_per_token="4", reasoning_per_token="2")
    record = ingest(other, "openai", openai_body("o-think", 1000, 500, reasoning=200))
    # 1,000 × $1/M + (500 − 200) × $4/M + 200 × $2/M = 0.001 + 0.0012 + 0.0004 = $0.0026
    assert record.cost == D("0.0026")
    e = assert_lines_add_up(record)
    assert [(ln.category, ln.count) for ln in e.lines] == [
        ("input", 1000),
        ("output_excl_reasoning", 300),
        ("reasoning", 200),
    ]


def test_it_says_the_providers_own_figure_was_used():
    account = AccountFactory(provider=provider("perplexity"))
    price("perplexity", "sonar", input_per_token="1", output_per_token="1", search_low="0.005")
    body = {
        "model": "sonar",
        "usage": {
            "prompt_tokens": 10,
            "completion_tokens": 20,
            "search_context_size": "low",
            "cost": {"total_cost": 0.00601},
        },
    }
    record = ingest(account, "perplexity", body)
    # The provider's usage.cost.total_cost, $0.00601 (the book would say $0.00503).
    assert record.cost == D("0.00601")
    e = assert_lines_add_up(record)
    assert e.rule == Rule.PROVIDER_COST
    assert "provider's own figure" in e.summary
    assert e.arithmetic == "$0.00601 (the provider's own figure) = $0.00601"
    assert e.price_row is None  # the book was not used


def test_it_shows_a_search_fee_and_the_local_compute_rate():
    account = AccountFactory(provider=provider("perplexity"))
    price("perplexity", "sonar", input_per_token="1", output_per_token="1", search_low="0.005")
    body = {"model": "sonar", "usage": {"prompt_tokens": 10, "completion_tokens": 20}}
    record = ingest(account, "perplexity", body)
    # 10 × $1/M + 20 × $1/M + 1 request × $0.005 = 0.00001 + 0.00002 + 0.005 = $0.00503
    assert record.cost == D("0.00503")
    e = assert_lines_add_up(record)
    assert e.lines[-1].category == "search_per_request"
    assert e.arithmetic.endswith("1 × $0.005 = $0.00503")

    local = AccountFactory(provider=provider("ollama"), config={"compute_rate_per_hour": "0.36"})
    body = {"model": "llama3.2", "done": True, "prompt_eval_count": 26, "eval_count": 298}
    body["total_duration"] = 5_000_000_000
    record = ingest(local, "ollama", body)
    # $0.36/hour × 5 s = 0.36 × 5 / 3,600 = $0.0005
    assert record.cost == D("0.0005")
    e = assert_lines_add_up(record)
    assert e.rule == Rule.COMPUTE_RATE
    assert e.arithmetic == "5 s × $0.36/h = $0.0005"

    free = AccountFactory(provider=provider("ollama"))
    record = ingest(free, "ollama", body, request_id="r2")
    e = assert_lines_add_up(record)  # $0 and no lines
    assert e.rule == Rule.FREE and e.lines == [] and record.cost == 0


def test_it_explains_the_other_providers_rules_from_their_adapters():
    usage = RequestUsage(model="x", input_tokens=10, request_count=3, found=True)
    from usage.pricing import Price as PriceRule

    premium = costing_for("copilot", usage, PriceRule(per_request=D("0.04")))
    # 3 premium requests × $0.04 = $0.12
    assert premium.rule == Rule.PER_REQUEST and premium.total == D("0.12")
    free = costing_for("openai_compatible", usage, None, account_config={"free": True})
    assert free.rule == Rule.FREE and free.total == 0 and free.note


def test_it_says_why_a_request_is_unpriced_and_links_to_add_the_price(client):
    account = AccountFactory(provider=provider("openai"))
    record = ingest(account, "openai", openai_body("gpt-9-preview", 700, 300))
    assert record.cost is None
    e = usage_record_explain(record=record)
    assert e.rule == Rule.NO_PRICE and e.lines_total is None and e.current_cost is None
    assert "no price for model “gpt-9-preview”" in e.summary
    assert e.arithmetic == "700 × (no price) + 300 × (no price) = unpriced"
    pk = provider("openai").pk
    assert e.add_price_url == f"/admin/usage/price/add/?provider={pk}&model=gpt-9-preview"
    assert e.reprice_command == "python manage.py reprice --since 2026-11-15"
    # The admin's add page takes the prefill.
    admin = UserFactory(is_staff=True, is_superuser=True)
    client.force_login(admin)
    page = client.get(e.add_price_url).content.decode()
    assert 'value="gpt-9-preview"' in page
    assert f'<option value="{pk}" selected>' in page

    client.force_login(account.workspace.personal_for)
    page = client.get(f"/usage/records/{record.pk}/").content.decode()
    assert "Add a price for gpt-9-preview" in page
    assert e.add_price_url.replace("&", "&amp;") in page


def test_it_names_the_missing_category_of_a_price_row():
    account = AccountFactory(provider=provider("openai"))
    row = price("openai", "gpt-image", input_per_token="5", output_per_token="10")
    usage = RequestUsage(model="gpt-image", input_tokens=100, images=2, found=True)
    record = record_usage(account, usage)
    assert record.cost is None  # 2 images and no price per image
    e = usage_record_explain(record=record)
    assert e.rule == Rule.PRICE_BOOK and e.price_row.id == row.pk
    assert e.arithmetic == "100 × $5/M + 2 × (no price) = unpriced"
    assert any(f"price row #{row.pk} has no price per image" in note for note in e.notes)


def test_it_shows_when_todays_price_book_differs_from_the_stored_cost():
    account = AccountFactory(provider=provider("openai"))
    row = price("openai", "gpt-4o", input_per_token="2.50", output_per_token="10")
    record = ingest(account, "openai", openai_body("gpt-4o", 1000, 100))
    # 1,000 × $2.50/M + 100 × $10/M = 0.0025 + 0.001 = $0.0035
    assert record.cost == D("0.0035")
    row.output_per_token = D("20") * PER_M  # corrected since
    row.save()
    e = usage_record_explain(record=record)
    # Today: 1,000 × $2.50/M + 100 × $20/M = 0.0025 + 0.002 = $0.0045
    assert (e.stored_cost, e.current_cost, e.matches_current) == (D("0.0035"), D("0.0045"), False)
    assert e.reprice_command == "python manage.py reprice --since 2026-11-15"
    reprice_estimated(since=date(2026, 11, 15))
    record.refresh_from_db()
    assert_lines_add_up(record)


def test_it_explains_a_failed_call_as_zero():
    account = AccountFactory(provider=provider("openai"))
    price("openai", "gpt-4o", input_per_token="2.50", output_per_token="10")
    usage = RequestUsage(model="gpt-4o", input_tokens=100, found=True)
    record = record_usage(account, usage, status=RecordStatus.FAILED)
    e = usage_record_explain(record=record)
    assert record.cost == 0 and e.matches_current and e.current_cost == 0
    assert "failed call" in e.summary and "costs $0" in e.summary


def test_it_explains_a_cut_off_call_with_and_without_usage():
    account = AccountFactory(provider=provider("openai"))
    price("openai", "gpt-4o", input_per_token="2.50", output_per_token="10")
    usage = RequestUsage(model="gpt-4o", input_tokens=100, found=True)
    record = record_usage(account, usage, status=RecordStatus.INCOMPLETE)
    e = assert_lines_add_up(record)  # 100 × $2.50/M = $0.00025
    assert record.cost == D("0.00025") and any("cut off" in note for note in e.notes)
    usage = RequestUsage(model="gpt-4o", found=False)
    record = record_usage(account, usage, "r2", status=RecordStatus.INCOMPLETE)
    e = usage_record_explain(record=record)
    assert record.cost is None and e.matches_current and "before the provider reported" in e.summary


def test_it_shows_the_provider_line_of_an_official_row(client):
    account = AccountFactory(provider=provider("openai"))
    raw = {"object": "organization.costs.result", "amount": {"value": "1.5", "currency": "usd"}}
    record = UsageRecord.objects.create(
        account=account,
        provider=account.provider,
        natural_key="official:1",
        model="gpt-4o",
        line_item="gpt-4o, input",
        bucket_start=datetime(2026, 11, 14, tzinfo=UTC),
        granularity=Granularity.DAY,
        source=Source.OFFICIAL,
        cost=D("1.5"),
        raw=raw,
    )
    e = usage_record_explain(record=record)
    assert e.official == {"line_item": "gpt-4o, input", "day": date(2026, 11, 14), "raw": raw}
    assert "never re-priced" in e.summary and e.lines == []
    client.force_login(account.workspace.personal_for)
    page = client.get(f"/usage/records/{record.pk}/").content.decode()
    assert "gpt-4o, input" in page and "organization.costs.result" in page
    assert "never re-priced" in page


def test_it_shows_the_workspace_of_a_manual_entry(client):
    account = AccountFactory(provider=provider("openai"))
    with time_machine.travel("2026-11-15 12:00:00Z", tick=False):
        record = manual_entry_create(
            account=account, day=date(2026, 11, 10), description="November invoice", cost=D("42")
        )
    e = usage_record_explain(record=record)
    assert e.manual["workspace"] == account.workspace.name
    assert e.manual["note"] == "November invoice"
    client.force_login(account.workspace.personal_for)
    page = client.get(f"/usage/records/{record.pk}/").content.decode()
    assert "November invoice" in page and escape(account.workspace.name) in page
    assert "$42.00" in page


def test_it_answers_404_for_another_users_record_on_page_and_api(client, api_client):
    theirs = AccountFactory(provider=provider("openai"))
    price("openai", "gpt-4o", input_per_token="2.50", output_per_token="10")
    record = ingest(theirs, "openai", openai_body("gpt-4o-secret", 1000, 100))
    me = UserFactory()
    client.force_login(me)
    response = client.get(f"/usage/records/{record.pk}/")
    assert response.status_code == 404 and b"gpt-4o-secret" not in response.content
    api_client.force_authenticate(me)
    response = api_client.get(f"/api/usage/records/{record.pk}/explanation")
    assert response.status_code == 404 and b"gpt-4o-secret" not in response.content
    api_client.force_authenticate(theirs.workspace.personal_for)
    assert api_client.get(f"/api/usage/records/{record.pk}/explanation").status_code == 200


def test_the_api_object_has_the_documented_shape(api_client):
    account = AccountFactory(provider=provider("openai"))
    row = price(
        "openai",
        "gpt-4o-mini",
        input_per_token="0.15",
        cache_read_per_token="0.075",
        output_per_token="0.60",
    )
    record = ingest(account, "openai", openai_body("gpt-4o-mini", 1200, 300, cached=1000))
    api_client.force_authenticate(account.workspace.personal_for)
    body = api_client.get(f"/api/usage/records/{record.pk}/explanation").json()
    assert set(body) == {
        "record",
        "kind",
        "rule",
        "summary",
        "notes",
        "lines",
        "arithmetic",
        "lines_total",
        "stored_cost",
        "current_cost",
        "matches_current",
        "price_row",
        "add_price_url",
        "reprice_command",
        "official",
        "manual",
    }
    assert body["record"]["id"] == record.pk and body["kind"] == "estimated"
    assert body["rule"] == "price_book" and body["matches_current"] is True
    # $0.000285, as worked out in test_it_shows_the_arithmetic_of_a_cached_request
    assert body["stored_cost"] == body["current_cost"] == body["lines_total"] == "0.000285000000"
    assert all(is_money_str(body[k]) for k in ("stored_cost", "current_cost", "lines_total"))
    assert body["lines"][1] == {
        "category": "cache_read",
        "label": "Cache reads",
        "count": "1000",
        "unit": "per M tokens",
        "unit_price": "0.0000000750000000",  # the rate column, 16 places
        "amount": "0.000075000000",  # 1,000 × $0.075/M
        "formula": "1,000 × $0.075/M",
    }
    assert body["price_row"]["id"] == row.pk and body["price_row"]["origin"] == "admin"
    assert body["official"] is None and body["manual"] is None
    schema = api_client.get("/api/schema/").content.decode()
    assert "/api/usage/records/{id}/explanation" in schema


def test_the_shown_lines_add_up_to_the_stored_cost_for_many_records():
    openai = AccountFactory(provider=provider("openai"))
    groq = AccountFactory(provider=provider("groq"))
    price(
        "openai",
        "gpt-4.1",
        input_per_token="2",
        cache_read_per_token="0.5",
        output_per_token="8",
        per_request="0.0001",
    )
    price("groq", "llama-3.1-8b-instant", input_per_token="0.05", output_per_token="0.08")
    shapes = [(1, 1, 0), (1200, 300, 1000), (987_654, 12_345, 123_456), (7, 0, 0), (0, 5, 0)]
    for i, (prompt, completion, cached) in enumerate(shapes):
        # e.g. (1,200 − 1,000) × $2/M + 1,000 × $0.5/M + 300 × $8/M + 1 × $0.0001
        # = 0.0004 + 0.0005 + 0.0024 + 0.0001 = $0.0034 for the second
        record = ingest(
            openai, "openai", openai_body("gpt-4.1", prompt, completion, cached), f"o{i}"
        )
        assert_lines_add_up(record)
        body = {
            "model": "llama-3.1-8b-instant",
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion},
        }
        assert_lines_add_up(ingest(groq, "groq", body, f"g{i}"))
    second = UsageRecord.objects.get(request_id="o1")
    assert second.cost == D("0.0034")


def test_history_links_each_row_to_its_explanation(client):
    account = AccountFactory(provider=provider("openai"))
    record = ingest(account, "openai", openai_body("gpt-9-preview", 1, 1))
    client.force_login(account.workspace.personal_for)
    page = client.get("/usage/history/").content.decode()
    assert f'href="/usage/records/{record.pk}/"' in page
