"""Long-context price tiers: a prompt above a model's threshold prices the whole request at the
tier's rates (LiteLLM 1.109.1's rule). Every expected figure is worked out by hand beside it.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import time_machine
from django.db import IntegrityError, transaction

from providers.tests.factories import AccountFactory, provider
from usage import pricing
from usage.extraction import RequestUsage
from usage.models import Price as PriceRow
from usage.models import UsageRecord
from usage.pricing import SHIPPED_PRICES_PATH, Price, litellm_to_prices, standard_cost
from usage.services.prices import (
    EPOCH,
    PriceFileError,
    load_price_file,
    price_rule,
    prices_import,
)
from usage.services.requests import RequestEvent, request_events_record

D = Decimal
PER_M = D("0.000001")  # one dollar per million tokens, in dollars per token

# gemini/gemini-2.5-pro in the shipped snapshot (LiteLLM 1.109.1), USD per 1M tokens:
# ≤200k prompt: $1.25 in, $0.125 cache read, $10 out; >200k: $2.50, $0.25, $15.
GEMINI_2_5_PRO = Price(
    input_per_token=D("1.25") * PER_M,
    cache_read_per_token=D("0.125") * PER_M,
    output_per_token=D("10") * PER_M,
    long_context_threshold=200_000,
    input_per_token_long=D("2.5") * PER_M,
    cache_read_per_token_long=D("0.25") * PER_M,
    output_per_token_long=D("15") * PER_M,
)
# claude-haiku-5-5 in the shipped snapshot, USD per 1M tokens: ≤100k prompt: $0.10 in,
# $0.01 cache read, $0.125 cache write (5 min), $0.20 (1 h), $0.50 out; >100k: $0.50, $0.05,
# $0.625, $1, $2.50.
HAIKU_5_5 = Price(
    input_per_token=D("0.1") * PER_M,
    cache_read_per_token=D("0.01") * PER_M,
    cache_write_per_token=D("0.125") * PER_M,
    cache_write_1h_per_token=D("0.2") * PER_M,
    output_per_token=D("0.5") * PER_M,
    long_context_threshold=100_000,
    input_per_token_long=D("0.5") * PER_M,
    cache_read_per_token_long=D("0.05") * PER_M,
    cache_write_per_token_long=D("0.625") * PER_M,
    cache_write_1h_per_token_long=D("1") * PER_M,
    output_per_token_long=D("2.5") * PER_M,
)


def usage(**counts) -> RequestUsage:
    return RequestUsage(model="m", found=True, **counts)


# --- the cost rule -----------------------------------------------------------------------


def test_it_uses_the_ordinary_rates_below_the_threshold():
    # Prompt 150,000 + 40,000 cached = 190,000 ≤ 200,000:
    # 150,000 × $1.25/M + 40,000 × $0.125/M + 2,000 × $10/M = 0.1875 + 0.005 + 0.02 = $0.2125
    cost = standard_cost(
        usage(input_tokens=150_000, cache_read_tokens=40_000, output_tokens=2_000),
        GEMINI_2_5_PRO,
    )
    assert cost == D("0.2125")


def test_it_uses_the_ordinary_rates_at_the_threshold_exactly():
    # Prompt 160,000 + 40,000 cached = 200,000: not above 200,000 (LiteLLM compares with >):
    # 160,000 × $1.25/M + 40,000 × $0.125/M + 2,000 × $10/M = 0.2 + 0.005 + 0.02 = $0.225
    cost = standard_cost(
        usage(input_tokens=160_000, cache_read_tokens=40_000, output_tokens=2_000),
        GEMINI_2_5_PRO,
    )
    assert cost == D("0.225")


def test_it_prices_every_token_at_the_long_rates_one_token_above():
    # Prompt 160,001 + 40,000 cached = 200,001 > 200,000: the whole request at the long rates:
    # 160,001 × $2.50/M + 40,000 × $0.25/M + 2,000 × $15/M = 0.4000025 + 0.01 + 0.03
    # = $0.4400025
    cost = standard_cost(
        usage(input_tokens=160_001, cache_read_tokens=40_000, output_tokens=2_000),
        GEMINI_2_5_PRO,
    )
    assert cost == D("0.4400025")


def test_it_counts_cached_input_in_the_prompt():
    # Only 10,000 uncached, but 10,000 + 195,000 cached = 205,000 > 200,000:
    # 10,000 × $2.50/M + 195,000 × $0.25/M + 1,000 × $15/M = 0.025 + 0.04875 + 0.015
    # = $0.08875
    cost = standard_cost(
        usage(input_tokens=10_000, cache_read_tokens=195_000, output_tokens=1_000),
        GEMINI_2_5_PRO,
    )
    assert cost == D("0.08875")


def test_it_counts_cache_writes_in_the_prompt_and_prices_them_at_the_long_rates():
    # 50,000 + 30,000 written (5 min) + 20,001 written (1 h) = 100,001 > 100,000:
    # 50,000 × $0.50/M + 30,000 × $0.625/M + 20,001 × $1/M + 1,000 × $2.50/M
    # = 0.025 + 0.01875 + 0.020001 + 0.0025 = $0.066251
    above = usage(
        input_tokens=50_000,
        cache_write_tokens=30_000,
        cache_write_1h_tokens=20_001,
        output_tokens=1_000,
    )
    assert standard_cost(above, HAIKU_5_5) == D("0.066251")
    # One 1-hour write fewer: 100,000, not above the threshold:
    # 50,000 × $0.10/M + 30,000 × $0.125/M + 20,000 × $0.20/M + 1,000 × $0.50/M
    # = 0.005 + 0.00375 + 0.004 + 0.0005 = $0.01325
    at = usage(
        input_tokens=50_000,
        cache_write_tokens=30_000,
        cache_write_1h_tokens=20_000,
        output_tokens=1_000,
    )
    assert standard_cost(at, HAIKU_5_5) == D("0.01325")


def test_a_missing_long_rate_keeps_the_ordinary_rate_of_its_category():
    # gpt-5.4's shape without its long cache-read rate: $2.50 in, $0.25 cached, $15 out;
    # above 272k $5 in and $22.50 out. Prompt 200,000 + 100,000 cached = 300,000 > 272,000:
    # 200,000 × $5/M + 100,000 × $0.25/M (no long cache rate) + 1,000 × $22.50/M
    # = 1.0 + 0.025 + 0.0225 = $1.0475
    price = Price(
        input_per_token=D("2.5") * PER_M,
        cache_read_per_token=D("0.25") * PER_M,
        output_per_token=D("15") * PER_M,
        long_context_threshold=272_000,
        input_per_token_long=D("5") * PER_M,
        output_per_token_long=D("22.5") * PER_M,
    )
    counts = usage(input_tokens=200_000, cache_read_tokens=100_000, output_tokens=1_000)
    assert standard_cost(counts, price) == D("1.0475")
    # Only a long input rate: output keeps $15/M.
    # 200,000 × $5/M + 100,000 × $0.25/M + 1,000 × $15/M = 1.0 + 0.025 + 0.015 = $1.04
    input_only = replace(price, output_per_token_long=None)
    assert standard_cost(counts, input_only) == D("1.04")


def test_cached_input_without_any_cache_price_bills_at_the_long_input_rate():
    # gpt-5.4-pro (snapshot): $30 in, $180 out; above 272k $60 in, $270 out; no cache price.
    # 200,000 + 100,000 cached = 300,000 > 272,000; cached tokens bill as ordinary input,
    # which is now the long rate (as in LiteLLM):
    # 200,000 × $60/M + 100,000 × $60/M + 1,000 × $270/M = 12 + 6 + 0.27 = $18.27
    price = Price(
        input_per_token=D("30") * PER_M,
        output_per_token=D("180") * PER_M,
        long_context_threshold=272_000,
        input_per_token_long=D("60") * PER_M,
        output_per_token_long=D("270") * PER_M,
    )
    counts = usage(input_tokens=200_000, cache_read_tokens=100_000, output_tokens=1_000)
    assert standard_cost(counts, price) == D("18.27")


def test_a_one_hour_write_without_its_long_rate_keeps_its_ordinary_rate():
    # LiteLLM: the 1-hour long rate, else the ordinary 1-hour rate, else the (long) 5-minute.
    # 100,001 written for 1 h > 100,000: 100,001 × $0.20/M = $0.0200002
    price = replace(HAIKU_5_5, cache_write_1h_per_token_long=None)
    assert standard_cost(usage(cache_write_1h_tokens=100_001), price) == D("0.0200002")
    # With no 1-hour rate at all, the long 5-minute one: 100,001 × $0.625/M = $0.062500625
    price = replace(price, cache_write_1h_per_token=None)
    assert standard_cost(usage(cache_write_1h_tokens=100_001), price) == D("0.062500625")


def test_reasoning_priced_apart_keeps_its_rate_in_the_long_tier():
    # LiteLLM has no long reasoning rate. 250,000 in > 200,000; 1,000 out of which 400
    # reasoning at its own $3/M: 250,000 × $2.50/M + 600 × $15/M + 400 × $3/M
    # = 0.625 + 0.009 + 0.0012 = $0.6352
    price = replace(GEMINI_2_5_PRO, reasoning_per_token=D("3") * PER_M)
    counts = usage(input_tokens=250_000, output_tokens=1_000, reasoning_tokens=400)
    assert standard_cost(counts, price) == D("0.6352")


def test_long_rates_without_a_threshold_are_not_applied():
    price = replace(GEMINI_2_5_PRO, long_context_threshold=None)
    # 300,000 × $1.25/M + 1,000 × $10/M = 0.375 + 0.01 = $0.385 (the ordinary rates)
    assert standard_cost(usage(input_tokens=300_000, output_tokens=1_000), price) == D("0.385")


def test_an_unpriced_category_stays_unpriced_in_the_long_tier():
    price = Price(long_context_threshold=10, output_per_token=PER_M, output_per_token_long=PER_M)
    assert standard_cost(usage(input_tokens=11, output_tokens=1), price) is None


# --- LiteLLM's keys -----------------------------------------------------------------------


def _as_known_provider(monkeypatch, litellm_provider: str) -> None:
    # The Gemini adapter is written elsewhere: map its LiteLLM entries to a kind for these
    # tests only (nothing is registered).
    monkeypatch.setattr(pricing, "_litellm_providers", lambda: {litellm_provider: "gemini"})
    monkeypatch.setattr(pricing, "_key_prefixed_kinds", lambda: ("gemini",))


def test_it_reads_gemini_2_5_pro_s_tier_from_the_shipped_snapshot(monkeypatch):
    _as_known_provider(monkeypatch, "gemini")
    data = load_price_file(SHIPPED_PRICES_PATH)
    price = litellm_to_prices(data)[("gemini", "gemini-2.5-pro")]
    # The "_priority" keys (a service tier, not a prompt size) leave no trace.
    assert price == Price(
        input_per_token=D("1.25e-06"),
        cache_read_per_token=D("1.25e-07"),
        output_per_token=D("0.00001"),
        search_low=D("0.035"),
        search_medium=D("0.035"),
        search_high=D("0.035"),
        long_context_threshold=200_000,
        input_per_token_long=D("2.5e-06"),
        cache_read_per_token_long=D("2.5e-07"),
        output_per_token_long=D("0.000015"),
    )


def test_it_reads_the_threshold_from_the_key_suffix(monkeypatch):
    _as_known_provider(monkeypatch, "gemini")
    entries = {
        # An older Gemini tier.
        "gemini/a": {
            "litellm_provider": "gemini",
            "input_cost_per_token": 1e-06,
            "input_cost_per_token_above_128k_tokens": 2e-06,
            "input_cost_per_character_above_128k_tokens": 5e-07,  # per character: not ours
        },
        # A threshold without "k"; only the output rate has a tier (LiteLLM 1.109.1 marks the
        # threshold with any rate's key, not only the input one).
        "gemini/b": {
            "litellm_provider": "gemini",
            "input_cost_per_token": 1e-06,
            "output_cost_per_token": 2e-06,
            "output_cost_per_token_above_128_tokens": 3e-06,
        },
        # Service tiers only: no prompt-size tier.
        "gemini/c": {
            "litellm_provider": "gemini",
            "input_cost_per_token": 1e-06,
            "input_cost_per_token_above_200k_tokens_priority": 2e-06,
            "input_cost_per_token_above_200k_tokens_batches": 5e-07,
            "input_cost_per_token_above_272k_tokens_flex": 5e-07,
        },
        # Two thresholds: the lower is kept (LiteLLM applies it first).
        "gemini/d": {
            "litellm_provider": "gemini",
            "input_cost_per_token": 1e-06,
            "input_cost_per_token_above_200k_tokens": 3e-06,
            "input_cost_per_token_above_128k_tokens": 2e-06,
        },
    }
    prices = litellm_to_prices(json.loads(json.dumps(entries), parse_float=D))
    a, b, c, d = (prices[("gemini", name)] for name in "abcd")
    assert (a.long_context_threshold, a.input_per_token_long) == (128_000, D("0.000002"))
    assert (b.long_context_threshold, b.input_per_token_long) == (128, None)
    assert b.output_per_token_long == D("0.000003")
    assert (c.long_context_threshold, c.input_per_token_long) == (None, None)
    assert (d.long_context_threshold, d.input_per_token_long) == (128_000, D("0.000002"))


def test_no_shipped_entry_has_two_prompt_size_thresholds():
    # A Price holds one tier; if LiteLLM ever ships two for one model, the lower is kept and
    # this says so.
    key = re.compile(
        r"^(input_cost_per_token|output_cost_per_token|cache_read_input_token_cost"
        r"|cache_creation_input_token_cost(_above_1hr)?)_above_(\d+k?)_tokens$"
    )
    data = load_price_file(SHIPPED_PRICES_PATH)
    several = {
        name: thresholds
        for name, entry in data.items()
        if isinstance(entry, dict)
        and len(thresholds := {m.group(3) for k in entry if (m := key.match(k))}) > 1
    }
    assert several == {}


def test_it_reads_every_tier_rate_of_an_anthropic_model_from_the_shipped_snapshot():
    data = load_price_file(SHIPPED_PRICES_PATH)
    # Its web search is $0.01 a query at every context size.
    search = {"search_low": D("0.01"), "search_medium": D("0.01"), "search_high": D("0.01")}
    assert litellm_to_prices(data)[("anthropic", "claude-haiku-5-5")] == replace(
        HAIKU_5_5, **search
    )


# --- the price book -----------------------------------------------------------------------


def haiku_file(tmp_path, name: str, *, output_long: str = "2.5e-06") -> dict:
    # claude-haiku-5-5's real keys from the shipped snapshot, its long output rate variable.
    text = (
        '{"claude-haiku-5-5": {"litellm_provider": "anthropic",'
        ' "input_cost_per_token": 1e-07, "output_cost_per_token": 5e-07,'
        ' "cache_read_input_token_cost": 1e-08, "cache_creation_input_token_cost": 1.25e-07,'
        ' "cache_creation_input_token_cost_above_1hr": 2e-07,'
        ' "input_cost_per_token_above_100k_tokens": 5e-07,'
        f' "output_cost_per_token_above_100k_tokens": {output_long},'
        ' "cache_creation_input_token_cost_above_100k_tokens": 6.25e-07,'
        ' "cache_creation_input_token_cost_above_1hr_above_100k_tokens": 1e-06,'
        ' "cache_read_input_token_cost_above_100k_tokens": 5e-08,'
        ' "input_cost_per_token_above_100k_tokens_batches": 2.5e-07}}'
    )
    path = tmp_path / name
    path.write_text(text)
    return load_price_file(path)


@pytest.mark.django_db
def test_it_imports_the_tier_columns_from_the_shipped_snapshot():
    prices_import(data=load_price_file(SHIPPED_PRICES_PATH))
    haiku = PriceRow.objects.get(provider__slug="anthropic", model="claude-haiku-5-5")
    assert (
        price_rule(haiku)
        == litellm_to_prices(load_price_file(SHIPPED_PRICES_PATH))[
            ("anthropic", "claude-haiku-5-5")
        ]
    )
    assert (haiku.long_context_threshold, haiku.cache_write_1h_per_token_long) == (
        100_000,
        D("0.000001"),  # $1/M
    )
    gpt = PriceRow.objects.get(provider__slug="openai", model="gpt-5.4")
    # $5/M in, $0.50/M cached, $22.50/M out above 272k; no long cache-write rate.
    assert (gpt.long_context_threshold, gpt.input_per_token_long) == (272_000, D("0.000005"))
    assert (gpt.cache_read_per_token_long, gpt.output_per_token_long) == (
        D("0.0000005"),
        D("0.0000225"),
    )
    assert gpt.cache_write_per_token_long is None
    # No tier, no threshold.
    mini = PriceRow.objects.get(provider__slug="openai", model="gpt-4o-mini")
    assert (mini.long_context_threshold, mini.input_per_token_long) == (None, None)
    # The same file again: the tier columns compare equal, nothing added.
    assert prices_import(data=load_price_file(SHIPPED_PRICES_PATH)).added == 0


@pytest.mark.django_db
def test_a_changed_tier_rate_adds_a_dated_row_and_keeps_history(tmp_path):
    account = AccountFactory(provider=provider("anthropic"))
    with time_machine.travel("2026-11-01 00:00:00Z", tick=False):
        counts = prices_import(data=haiku_file(tmp_path, "v1.json"))
        assert (counts.added, counts.changed) == (1, 0)
    change = datetime(2026, 11, 15, 12, tzinfo=UTC)
    with time_machine.travel(change, tick=False):
        # Only the long output rate moves, $2.50/M -> $3/M.
        counts = prices_import(data=haiku_file(tmp_path, "v2.json", output_long="3e-06"))
        assert (counts.added, counts.changed, counts.unchanged) == (0, 1, 0)
        again = prices_import(data=haiku_file(tmp_path, "v2.json", output_long="3e-06"))
        assert (again.added, again.changed, again.unchanged) == (0, 0, 1)
        # A request above the threshold on each side of the change, through the write path.
        big = RequestUsage(
            model="claude-haiku-5-5-20261001", input_tokens=120_000, output_tokens=1_000, found=True
        )
        events = [
            RequestEvent(request_id=rid, usage=big, occurred_at=datetime.fromisoformat(at))
            for rid, at in [
                ("before", "2026-11-15T11:59:59+00:00"),
                ("after", "2026-11-15T12:00:00+00:00"),
            ]
        ]
        request_events_record(account=account, events=events)
    old, new = PriceRow.objects.filter(model="claude-haiku-5-5").order_by("valid_from")
    assert (old.valid_from, old.valid_to, old.output_per_token_long) == (
        EPOCH,
        change,
        D("0.0000025"),
    )
    assert (new.valid_from, new.valid_to, new.output_per_token_long) == (
        change,
        None,
        D("0.000003"),
    )
    assert new.input_per_token_long == old.input_per_token_long == D("0.0000005")
    costs = dict(UsageRecord.objects.values_list("request_id", "cost"))
    # 120,000 > 100,000: 120,000 × $0.50/M + 1,000 × $2.50/M = 0.06 + 0.0025 = $0.0625
    assert costs["before"] == D("0.0625")
    # The new long output rate: 120,000 × $0.50/M + 1,000 × $3/M = 0.06 + 0.003 = $0.063
    assert costs["after"] == D("0.063")


@pytest.mark.django_db
def test_it_refuses_a_file_with_a_zero_threshold_and_writes_nothing(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(
        '{"claude-x": {"litellm_provider": "anthropic", "input_cost_per_token": 1e-06,'
        ' "input_cost_per_token_above_0k_tokens": 2e-06}}'
    )
    with pytest.raises(PriceFileError, match="claude-x.long_context_threshold"):
        prices_import(data=load_price_file(path))
    assert not PriceRow.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_the_database_refuses_a_tier_outside_its_bounds():
    anthropic = provider("anthropic")
    for figures in ({"long_context_threshold": 0}, {"input_per_token_long": D("-0.000001")}):
        with pytest.raises(IntegrityError), transaction.atomic():
            PriceRow.objects.create(
                provider=anthropic, model="claude-x", valid_from=EPOCH, **figures
            )


# --- the admin ----------------------------------------------------------------------------


@pytest.fixture
def admin_client(client):
    from accounts.tests.factories import UserFactory

    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


@pytest.mark.django_db
def test_the_admin_change_form_shows_the_long_context_fieldset(admin_client, tmp_path):
    prices_import(data=haiku_file(tmp_path, "v1.json"))
    row = PriceRow.objects.get(model="claude-haiku-5-5")
    response = admin_client.get(f"/admin/usage/price/{row.pk}/change/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "Long-context tier" in page
    assert 'name="long_context_threshold" value="100000"' in page
    assert 'name="output_per_token_long"' in page


@pytest.mark.django_db
def test_the_admin_saves_a_tier_and_refuses_rates_without_a_threshold(admin_client):
    form = {
        "provider": provider("anthropic").pk,
        "model": "claude-x",
        "valid_from_0": "2000-01-01",
        "valid_from_1": "00:00:00",
        "input_per_token": "0.000003",
        "input_per_token_long": "0.000006",
    }
    response = admin_client.post("/admin/usage/price/add/", form)
    assert response.status_code == 200  # the form again, with the error
    assert "Set the prompt size the long-context rates apply above." in response.content.decode()
    assert not PriceRow.objects.exists()

    response = admin_client.post(
        "/admin/usage/price/add/", {**form, "long_context_threshold": "200000"}
    )
    assert response.status_code == 302
    row = PriceRow.objects.get(model="claude-x")
    assert (row.long_context_threshold, row.input_per_token_long) == (200_000, D("0.000006"))
