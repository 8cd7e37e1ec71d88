from __future__ import annotations

import random
from datetime import date, timedelta
from decimal import Decimal

from alerts.anomalies import (
    detect_cache_collapse,
    detect_pricier_model_switch,
    detect_spend_spikes,
    median,
)

START = date(2025, 6, 1)


def _days(n: int) -> list[date]:
    return [START + timedelta(days=i) for i in range(n)]


def _flat_then(amount: str, last: str, n: int = 14) -> dict[date, Decimal]:
    """``n`` days at ``amount`` followed by one day at ``last``."""
    series = {d: Decimal(amount) for d in _days(n)}
    series[START + timedelta(days=n)] = Decimal(last)
    return series


def test_it_flags_a_spike_after_a_flat_history():
    spikes = detect_spend_spikes(_flat_then("1.00", "5.00"))
    # Median $1.00, MAD 0 floored to 10% of $1.00 = $0.10; threshold 1.00 + 3 * 0.10 = $1.30.
    assert len(spikes) == 1
    spike = spikes[0]
    assert spike.kind == "spike"
    assert spike.day == date(2025, 6, 15)
    assert spike.key == "total"
    assert spike.observed == Decimal("5.00")
    assert spike.baseline == Decimal("1.00")
    assert spike.threshold == Decimal("1.30")
    assert "$5.00" in spike.message
    assert "$1.00" in spike.message
    assert "$1.30" in spike.message


def test_it_ignores_a_one_cent_rise_on_a_flat_history():
    # $1.01 is under the $1.30 threshold worked out above.
    assert detect_spend_spikes(_flat_then("1.00", "1.01")) == []


def test_it_uses_min_amount_as_the_floor_for_a_zero_history():
    # Zero history: median 0, MAD floored at min_amount $0.01 -> threshold 0 + 3 * 0.01 = $0.03.
    assert detect_spend_spikes(_flat_then("0", "0.02")) == []
    assert len(detect_spend_spikes(_flat_then("0", "0.05"))) == 1


def test_it_does_not_flag_bounded_noise():
    # Every day is within $9.00-$11.00. The median is then at least $9.00, so the spread floor
    # is at least $0.90 and the threshold at least 9.00 + 3 * 0.90 = $11.70: no day can cross it.
    cycle = ["9.00", "10.50", "9.50", "11.00", "10.00", "9.20", "10.80", "9.90", "10.30"]
    series = {d: Decimal(cycle[i % len(cycle)]) for i, d in enumerate(_days(60))}
    assert detect_spend_spikes(series, last_only=False) == []


def test_it_rarely_flags_random_noise():
    # Twenty 90-day series of uniform $5-$15 noise (+/-50% around $10). In a 14-day window the
    # median and MAD are themselves noisy, so an odd false alarm is expected, but with k=3
    # standard deviations it stays near 1% of days (unscaled MAD gave ~3.5%).
    checked = flagged = 0
    for seed in range(20):
        rng = random.Random(seed)
        series = {d: Decimal(rng.randint(500, 1500)) / 100 for d in _days(90)}
        flagged += len(detect_spend_spikes(series, last_only=False))
        checked += 90 - 7  # days with at least min_history days before them
    assert flagged / checked < 0.02


def test_it_checks_every_day_when_asked():
    series = _flat_then("2.00", "9.00")
    series |= {START + timedelta(days=15 + i): Decimal("2.00") for i in range(5)}
    assert detect_spend_spikes(series) == []  # the last day is ordinary
    spikes = detect_spend_spikes(series, last_only=False)
    assert [s.day for s in spikes] == [date(2025, 6, 15)]


def test_it_treats_missing_days_as_zero_spend():
    # $10 on June 1 and 8 only; the gaps are $0 days, so the June 15 median is $0, MAD $0,
    # floor max(0, 10% of 0, $0.01) -> threshold $0.03: $10 is a spike.
    series = {date(2025, 6, 1): Decimal("10"), date(2025, 6, 8): Decimal("10")}
    series[date(2025, 6, 15)] = Decimal("10")
    spikes = detect_spend_spikes(series)
    assert spikes[0].baseline == Decimal("0")


def test_it_waits_for_min_history():
    # Only 5 days before the spike, fewer than min_history = 7.
    assert detect_spend_spikes(_flat_then("1.00", "50.00", n=5)) == []
    assert len(detect_spend_spikes(_flat_then("1.00", "50.00", n=5), min_history=5)) == 1


def test_it_takes_the_median_of_an_even_count():
    assert median([Decimal("1"), Decimal("4"), Decimal("2"), Decimal("3")]) == Decimal("2.5")


def _usage(model_days: dict[str, tuple[str, int, range]]):
    """{model: (cost per day, tokens per day, day offsets)} -> the detector's two mappings."""
    cost: dict[str, dict[date, Decimal]] = {}
    tokens: dict[str, dict[date, int]] = {}
    for model, (day_cost, day_tokens, offsets) in model_days.items():
        cost[model] = {START + timedelta(days=i): Decimal(day_cost) for i in offsets}
        tokens[model] = {START + timedelta(days=i): day_tokens for i in offsets}
    return cost, tokens


def test_it_flags_a_switch_to_a_pricier_model():
    # 14 days of gpt-4o-mini: 1M tokens for $0.30 a day = $0.30 / 1000 = $0.0003 per 1K.
    # Day 15: gpt-4o, 1M tokens for $5.00 = $0.005 per 1K.
    cost, tokens = _usage(
        {
            "gpt-4o-mini": ("0.30", 1_000_000, range(14)),
            "gpt-4o": ("5.00", 1_000_000, range(14, 15)),
        }
    )
    found = detect_pricier_model_switch(cost, tokens)
    # Median $0.0003, MAD 0 floored at 10% = $0.00003 -> threshold 0.0003 + 3 * 0.00003 = $0.00039.
    assert len(found) == 1
    anomaly = found[0]
    assert anomaly.kind == "pricier_model"
    assert anomaly.key == "gpt-4o"
    assert anomaly.day == date(2025, 6, 15)
    assert anomaly.observed == Decimal("0.005")
    assert anomaly.baseline == Decimal("0.0003")
    assert anomaly.threshold == Decimal("0.00039")
    assert "$0.00500" in anomaly.message
    assert "$0.000300" in anomaly.message
    assert "gpt-4o's share of tokens grew from 0.0% to 100.0%" in anomaly.message


def test_it_flags_a_partial_shift_towards_a_pricier_model():
    # Baseline: gpt-4o-mini only, $0.0003 per 1K. Day 15: 1M mini tokens ($0.30) plus 1M
    # gpt-4o tokens ($5.00): $5.30 / 2M tokens * 1000 = $0.00265 per 1K, over $0.00039.
    cost, tokens = _usage(
        {
            "gpt-4o-mini": ("0.30", 1_000_000, range(15)),
            "gpt-4o": ("5.00", 1_000_000, range(14, 15)),
        }
    )
    found = detect_pricier_model_switch(cost, tokens)
    assert found[0].observed == Decimal("0.00265")
    assert found[0].key == "gpt-4o"
    assert "from 0.0% to 50.0%" in found[0].message


def test_it_does_not_flag_more_traffic_on_the_same_model():
    # Day 15 uses ten times the tokens at the same unit price: $3.00 / 10M = $0.0003 per 1K.
    cost, tokens = _usage({"gpt-4o-mini": ("0.30", 1_000_000, range(14))})
    cost["gpt-4o-mini"][date(2025, 6, 15)] = Decimal("3.00")
    tokens["gpt-4o-mini"][date(2025, 6, 15)] = 10_000_000
    assert detect_pricier_model_switch(cost, tokens) == []


def test_it_skips_days_with_too_few_tokens_to_price():
    # A 500-token day at a high price is below min_tokens (1000) and is not judged.
    cost, tokens = _usage(
        {"gpt-4o-mini": ("0.30", 1_000_000, range(14)), "gpt-4o": ("0.01", 500, range(14, 15))}
    )
    assert detect_pricier_model_switch(cost, tokens) == []


def _cache(rates: list[tuple[int, int]]) -> tuple[dict[date, int], dict[date, int]]:
    """[(cache_read, uncached input)] per day from START."""
    days = _days(len(rates))
    return (
        {d: r[0] for d, r in zip(days, rates, strict=True)},
        {d: r[1] for d, r in zip(days, rates, strict=True)},
    )


def test_it_flags_a_cache_collapse():
    # 14 days at 800k cached / 1M prompt tokens = 80%; day 15 at 100k / 1M = 10%.
    cache_read, input_total = _cache([(800_000, 200_000)] * 14 + [(100_000, 900_000)])
    found = detect_cache_collapse(cache_read, input_total)
    # Median 0.8, MAD 0: threshold = min(0.8 - 3 * 0, 0.8 - 0.20) = 0.6.
    assert len(found) == 1
    anomaly = found[0]
    assert anomaly.kind == "cache_collapse"
    assert anomaly.observed == Decimal("0.1")
    assert anomaly.baseline == Decimal("0.8")
    assert anomaly.threshold == Decimal("0.6")
    assert "10.0%" in anomaly.message
    assert "80.0%" in anomaly.message
    assert "60.0%" in anomaly.message


def test_it_needs_a_twenty_point_drop_for_a_cache_collapse():
    # 80% -> 65% is far outside MAD 0 but only 15 points down, under the 20-point minimum.
    cache_read, input_total = _cache([(800_000, 200_000)] * 14 + [(650_000, 350_000)])
    assert detect_cache_collapse(cache_read, input_total) == []


def test_it_does_not_flag_a_cache_drop_within_the_usual_swings():
    # Alternating 40% and 90%: median 0.65 (even count), MAD 0.25 -> 0.65 - 3 * 1.4826 * 0.25 < 0,
    # so a 30% day (35 points down) is still within the usual range.
    cache_read, input_total = _cache(
        [(400_000, 600_000), (900_000, 100_000)] * 7 + [(300_000, 700_000)]
    )
    assert detect_cache_collapse(cache_read, input_total) == []


def test_it_ignores_days_without_prompt_tokens():
    cache_read, input_total = _cache([(800_000, 200_000)] * 14)
    input_total[date(2025, 6, 15)] = 0  # a day with no traffic has no hit rate
    assert detect_cache_collapse(cache_read, input_total) == []
