"""Anomaly detection on daily series: pure functions, no database.

Every detector uses the same robust rule: the baseline is the median of the trailing ``window``
days before the day being checked, the spread is the median absolute deviation (MAD) of that
window, and a day is flagged when it lies more than ``k`` spreads beyond the median. Medians
shrug off the odd spike in the history, which a mean and standard deviation would not. A day is
only judged when at least ``min_history`` usable days precede it in the window.

The MAD is scaled by 1.4826, which makes it estimate the standard deviation of normal noise, so
``k`` reads as "standard deviations". Unscaled, k=3 is only about two standard deviations: on
simulated noisy daily spend it flagged roughly one ordinary day in twenty.

The series are usage-based spend only: alerts.selectors.account_model_days takes fixed charges
(usage.selectors.FIXED_CHARGE: manual entries, synced seat lines) out before they get here, the
same split the forecast uses, so a seat charge or a change in seat count is never a spike.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from alerts.forecast import format_usd

ZERO = Decimal(0)
THOUSAND = Decimal(1000)
MAD_TO_SD = Decimal("1.4826")
# A flat history has MAD 0, which would make any rise at all an anomaly. The spread used is at
# least this fraction of the median, so with k=3 a flat $1.00/day needs more than $1.30.
MAD_FLOOR_FRACTION = Decimal("0.10")


@dataclass(frozen=True)
class Anomaly:
    """One flagged day. ``observed``, ``baseline`` and ``threshold`` share a unit: dollars for
    spikes, dollars per 1K tokens for model switches, a 0-1 fraction for cache hit rates."""

    kind: str  # "spike" | "pricier_model" | "cache_collapse"
    day: date
    key: str
    observed: Decimal
    baseline: Decimal
    threshold: Decimal
    message: str


def median(values: Iterable[Decimal]) -> Decimal:
    """The median; the mean of the two middle values for an even count."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("median of an empty sequence")
    mid = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[mid]
    return (ordered[mid - 1] + ordered[mid]) / 2


def robust_spread(values: Iterable[Decimal], center: Decimal) -> Decimal:
    """The median absolute deviation from ``center``, scaled to a standard deviation."""
    return median(abs(v - center) for v in values) * MAD_TO_SD


def _days_to_check(days: list[date], last_only: bool) -> list[date]:
    return days[-1:] if last_only else days


def _percent(fraction: Decimal) -> str:
    return f"{fraction * 100:.1f}%"


def detect_spend_spikes(
    series: Mapping[date, Decimal],
    *,
    k: Decimal = Decimal(3),
    window: int = 14,
    min_history: int = 7,
    min_amount: Decimal = Decimal("0.01"),
    last_only: bool = True,
    key: str = "total",
) -> list[Anomaly]:
    """Flag days whose spend exceeds median + k * spread of the trailing ``window`` days.

    Missing days inside the series' span count as $0 (the roll-up omits empty days); days
    before the first entry are unknown and do not count towards ``min_history``. The spread is
    floored at 10% of the median and at ``min_amount``, so a flat $1.00 history flags $5.00 but
    not $1.01, and a history of zeros needs a rise of more than ``k * min_amount``.
    """
    if not series:
        return []
    first = min(series)
    found: list[Anomaly] = []
    for day in _days_to_check(sorted(series), last_only):
        start = max(first, day - timedelta(days=window))
        history = [series.get(start + timedelta(days=i), ZERO) for i in range((day - start).days)]
        if len(history) < min_history:
            continue
        baseline = median(history)
        spread = max(
            robust_spread(history, baseline),
            abs(baseline) * MAD_FLOOR_FRACTION,
            min_amount,
        )
        threshold = baseline + k * spread
        observed = series[day]
        if observed > threshold:
            found.append(
                Anomaly(
                    kind="spike",
                    day=day,
                    key=key,
                    observed=observed,
                    baseline=baseline,
                    threshold=threshold,
                    message=(
                        f"Spend on {day.isoformat()} was {format_usd(observed)}, against a usual "
                        f"{format_usd(baseline)} a day (median of the previous {len(history)} "
                        f"days); anything above {format_usd(threshold)} counts as a spike."
                    ),
                )
            )
    return found


def detect_pricier_model_switch(
    per_model_daily_cost: Mapping[str, Mapping[date, Decimal]],
    per_model_daily_tokens: Mapping[str, Mapping[date, int]],
    *,
    k: Decimal = Decimal(3),
    window: int = 14,
    min_history: int = 7,
    min_tokens: int = 1000,
    last_only: bool = True,
) -> list[Anomaly]:
    """Flag days whose blended cost per 1K tokens exceeds median + k * spread of the window.

    The blended price is the day's total cost over its total tokens across all models, so it
    rises when traffic moves to a pricier model even if no single model's price changed. Days
    with fewer than ``min_tokens`` tokens have no meaningful price and are skipped, both as
    candidates and as history. The spread is floored at 10% of the median. The anomaly's ``key``
    names the model whose share of tokens grew the most against the window (or, if none grew,
    the day's most expensive model).
    """
    models = sorted(set(per_model_daily_cost) | set(per_model_daily_tokens))
    cost_by_day: dict[date, Decimal] = {}
    tokens_by_day: dict[date, int] = {}
    for model in models:
        for day, cost in per_model_daily_cost.get(model, {}).items():
            cost_by_day[day] = cost_by_day.get(day, ZERO) + cost
        for day, tokens in per_model_daily_tokens.get(model, {}).items():
            tokens_by_day[day] = tokens_by_day.get(day, 0) + tokens

    price = {
        day: cost_by_day.get(day, ZERO) * THOUSAND / tokens
        for day, tokens in tokens_by_day.items()
        if tokens >= min_tokens and tokens > 0
    }
    priced_days = sorted(price)
    found: list[Anomaly] = []
    for day in _days_to_check(priced_days, last_only):
        history_days = [d for d in priced_days if day - timedelta(days=window) <= d < day]
        if len(history_days) < min_history:
            continue
        history = [price[d] for d in history_days]
        baseline = median(history)
        spread = max(robust_spread(history, baseline), abs(baseline) * MAD_FLOOR_FRACTION)
        threshold = baseline + k * spread
        observed = price[day]
        if observed <= threshold:
            continue

        window_tokens = sum(tokens_by_day[d] for d in history_days)
        grown: list[tuple[Decimal, str, Decimal, Decimal]] = []
        for model in models:
            tokens = per_model_daily_tokens.get(model, {})
            before = Decimal(sum(tokens.get(d, 0) for d in history_days)) / window_tokens
            now = Decimal(tokens.get(day, 0)) / tokens_by_day[day]
            grown.append((now - before, model, before, now))
        # Highest growth first; ties broken by name so the result does not depend on dict order.
        growth, model, before, now = min(grown, key=lambda g: (-g[0], g[1]))
        if growth > 0:
            reason = f"{model}'s share of tokens grew from {_percent(before)} to {_percent(now)}"
        else:
            model = max(models, key=lambda m: (per_model_daily_cost.get(m, {}).get(day, ZERO), m))
            reason = f"{model} was the most expensive model that day"
        found.append(
            Anomaly(
                kind="pricier_model",
                day=day,
                key=model,
                observed=observed,
                baseline=baseline,
                threshold=threshold,
                message=(
                    f"Cost per 1K tokens on {day.isoformat()} was "
                    f"{format_usd(observed, significant=3)}, against a usual "
                    f"{format_usd(baseline, significant=3)} (threshold "
                    f"{format_usd(threshold, significant=3)}); {reason}."
                ),
            )
        )
    return found


def detect_cache_collapse(
    daily_cache_read: Mapping[date, int],
    daily_input_total: Mapping[date, int],
    *,
    k: Decimal = Decimal(3),
    window: int = 14,
    min_history: int = 7,
    min_drop: Decimal = Decimal("0.20"),
    min_tokens: int = 1000,
    last_only: bool = True,
    key: str = "total",
) -> list[Anomaly]:
    """Flag days whose prompt-cache hit rate falls below median - k * spread of the window.

    The hit rate is ``cache_read / (input + cache_read)``, where ``daily_input_total`` counts
    uncached input tokens only. A day must also fall at least ``min_drop`` (20 percentage
    points) below the median, so a steady 80% that dips to 75% is left alone even when the
    spread is zero. Days with fewer than ``min_tokens`` prompt tokens are skipped. ``observed``,
    ``baseline`` and ``threshold`` are fractions between 0 and 1.
    """
    rate: dict[date, Decimal] = {}
    for day in set(daily_cache_read) | set(daily_input_total):
        cached = daily_cache_read.get(day, 0)
        total = cached + daily_input_total.get(day, 0)
        if total >= min_tokens and total > 0:
            rate[day] = Decimal(cached) / Decimal(total)
    rated_days = sorted(rate)
    found: list[Anomaly] = []
    for day in _days_to_check(rated_days, last_only):
        history_days = [d for d in rated_days if day - timedelta(days=window) <= d < day]
        if len(history_days) < min_history:
            continue
        history = [rate[d] for d in history_days]
        baseline = median(history)
        spread = robust_spread(history, baseline)
        threshold = min(baseline - k * spread, baseline - min_drop)
        observed = rate[day]
        if observed < threshold:
            found.append(
                Anomaly(
                    kind="cache_collapse",
                    day=day,
                    key=key,
                    observed=observed,
                    baseline=baseline,
                    threshold=threshold,
                    message=(
                        f"Cache hit rate on {day.isoformat()} fell to {_percent(observed)}, "
                        f"against a usual {_percent(baseline)} (median of the previous "
                        f"{len(history)} days with traffic); below {_percent(threshold)} "
                        "counts as a collapse."
                    ),
                )
            )
    return found
