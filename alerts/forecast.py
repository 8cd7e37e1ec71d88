"""Month-end spend forecast: pure functions over daily totals, no database.

The caller passes daily spend keyed by the user's local date (the selectors draw the day
boundaries in the workspace's time zone). Money stays ``Decimal`` throughout; results are quantized
to 10 decimal places, the precision of the stored ``DecimalField``.

Conventions:

* ``days_elapsed`` counts the *complete* days before ``today``. Today's spend so far is part of
  ``month_to_date`` but today is still projected: its projection is the expected spend for a
  whole day minus what has already been spent (never below zero).
* A day inside the observed span with no entry is a $0 day: the daily roll-up omits empty days.
  The span starts at the first day of the month, or earlier if ``history`` goes back further.
* Fixed charges (seats, subscriptions, invoices, true-ups: usage.selectors.FIXED_CHARGE) are
  not spend per day. They come in apart from ``daily_spend`` and are added as booked, once;
  only usage-based spend gets a run-rate and a p10-p90 range.
"""

from __future__ import annotations

import calendar
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal

from usage.db import WIDE

ZERO = Decimal(0)
ONE = Decimal(1)
PLACES = Decimal("1e-10")  # DecimalField(decimal_places=10)
CENTS = Decimal("0.01")

# One-sided z-score of the 10th/90th percentile of a normal distribution.
Z_P90 = Decimal("1.2816")
TREND_WINDOW_DAYS = 14
# A slope fitted to fewer points mostly measures noise; below this the trend is a flat mean.
MIN_TREND_POINTS = 7
# The weekday pattern needs every weekday seen at least twice; older data is ignored.
PATTERN_MIN_DAYS = 14
PATTERN_MAX_DAYS = 56
# Weight of the trailing trend against this month's average (the rest).
TREND_WEIGHT = Decimal("0.5")


@dataclass(frozen=True)
class Forecast:
    """A month-end projection. ``low``/``high`` are the p10/p90 of the month total."""

    month_to_date: Decimal
    projected_total: Decimal
    low: Decimal
    high: Decimal
    days_elapsed: int
    days_in_month: int
    method: str
    # Expected *additional* spend per day from today to month end; today's entry excludes what
    # was already spent, so ``month_to_date + sum(amounts) == projected_total``.
    daily_projection: list[tuple[date, Decimal]] = field(default_factory=list)


@dataclass(frozen=True)
class _Trend:
    """A line ``level + slope * (day - today).days`` over weekday-adjusted spend."""

    level: Decimal
    slope: Decimal
    points: int

    def at(self, day: date, today: date) -> Decimal:
        return max(self.level + self.slope * (day - today).days, ZERO)


def format_usd(amount: Decimal, *, significant: int | None = None) -> str:
    """Format money for messages: ``$1,234.50``; ``-$3.00``.

    With ``significant``, amounts under $1 keep that many significant digits instead of being
    rounded to cents (unit prices such as $0.000150 per 1K tokens would otherwise read $0.00).
    """
    places = 2
    if significant is not None and amount and abs(amount) < 1:
        places = max(2, significant - 1 - amount.adjusted())
    quantum = Decimal(1).scaleb(-places)
    rounded = abs(amount).quantize(quantum, rounding=ROUND_HALF_UP, context=WIDE)
    sign = "-" if amount < 0 and rounded else ""
    return f"{sign}${rounded:,}"


def _q(amount: Decimal) -> Decimal:
    return amount.quantize(PLACES, rounding=ROUND_HALF_UP, context=WIDE)  # any stored sum


def _days(start: date, end: date) -> list[date]:
    """Days from ``start`` up to but excluding ``end``."""
    return [start + timedelta(days=i) for i in range((end - start).days)]


def _complete_days(
    daily_spend: Mapping[date, Decimal],
    history: Mapping[date, Decimal],
    month_start: date,
    today: date,
) -> list[tuple[date, Decimal]]:
    """The known complete days before ``today``, oldest first, gaps filled with $0."""
    merged = {**history, **daily_spend}
    start = min([month_start, *(d for d in merged if d < today)])
    start = max(start, today - timedelta(days=PATTERN_MAX_DAYS))
    return [(d, merged.get(d, ZERO)) for d in _days(start, today)]


def _weekday_factors(known: list[tuple[date, Decimal]]) -> list[Decimal] | None:
    """Each weekday's mean spend divided by the overall mean, or None if not enough history.

    Only whole weeks are used so every weekday is counted equally often and the factors average
    to one: weighting by them moves spend between days without changing the weekly total.
    """
    weeks = min(len(known), PATTERN_MAX_DAYS) // 7
    if len(known) < PATTERN_MIN_DAYS or weeks < 2:
        return None
    sample = known[-weeks * 7 :]
    overall = sum((v for _, v in sample), ZERO) / len(sample)
    if overall <= 0:
        return None
    totals = [ZERO] * 7
    for day, amount in sample:
        totals[day.weekday()] += amount
    # Refunds can make a weekday negative; a negative expected spend makes no sense.
    return [max(total / weeks / overall, ZERO) for total in totals]


def _fit_trend(points: list[tuple[date, Decimal]], today: date) -> _Trend | None:
    """Least-squares line through the points, or their mean when there are too few."""
    n = len(points)
    if n == 0:
        return None
    xs = [Decimal((d - today).days) for d, _ in points]
    ys = [v for _, v in points]
    mean_x = sum(xs, ZERO) / n
    mean_y = sum(ys, ZERO) / n
    if n < MIN_TREND_POINTS:
        return _Trend(level=mean_y, slope=ZERO, points=n)
    sxx = sum(((x - mean_x) ** 2 for x in xs), ZERO)
    sxy = sum(((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)), ZERO)
    slope = sxy / sxx if sxx else ZERO
    return _Trend(level=mean_y - slope * mean_x, slope=slope, points=n)


def _residual_sd(
    window: list[tuple[date, Decimal]],
    trend: _Trend,
    factor_of: dict[int, Decimal],
    today: date,
) -> Decimal:
    """Standard deviation of daily spend around the fitted (weekday-weighted) trend."""
    residuals = [v - factor_of[d.weekday()] * trend.at(d, today) for d, v in window]
    fitted_params = 2 if trend.points >= MIN_TREND_POINTS else 1
    dof = len(residuals) - fitted_params
    if dof <= 0:
        # One observed day says nothing about spread; assume it is as large as the rate itself
        # (coefficient of variation 1) so the range reads as "very uncertain".
        return trend.level
    return (sum((r * r for r in residuals), ZERO) / dof).sqrt()


def forecast_month_end(
    *,
    daily_spend: Mapping[date, Decimal],
    today: date,
    history: Mapping[date, Decimal] | None = None,
    fixed: Mapping[date, Decimal] | None = None,
    fixed_ahead: Mapping[date, Decimal] | None = None,
) -> Forecast:
    """Project the total spend of the calendar month containing ``today``.

    ``daily_spend`` and ``history`` are usage-based spend only. ``fixed`` holds this month's
    fixed charges by day: they count in ``month_to_date`` and the total as booked, whatever
    their day, and are never extrapolated. ``fixed_ahead`` holds fixed charges already
    committed for days after today (a prorated seat line continuing to month end): added on
    their days, with no spread. So the total is fixed charges + usage so far + the usage
    projection (+ committed fixed charges ahead).

    The expected spend of each remaining day is a 50/50 blend of this month's average daily
    spend and the trailing 14-day linear trend (drawn from ``history`` too, which may reach into
    earlier months), multiplied by that weekday's factor when two full weeks of history exist.
    Both blend inputs are computed on weekday-adjusted spend so a month that started on a
    weekend is not read as a slow month. The p10-p90 range is the projection +/- 1.2816 times
    the residual standard deviation times sqrt(days remaining), assuming independent days;
    ``low`` never drops below what has already been spent.
    """
    history = history or {}
    days_in_month = calendar.monthrange(today.year, today.month)[1]
    month_start = today.replace(day=1)
    month_end = today.replace(day=days_in_month)
    booked = _q(sum((v for d, v in (fixed or {}).items() if month_start <= d <= month_end), ZERO))
    ahead = {d: v for d, v in (fixed_ahead or {}).items() if today <= d <= month_end and v}
    usage = _forecast_usage(daily_spend=daily_spend, today=today, history=history)
    if not booked and not ahead:
        return usage
    projection = dict(usage.daily_projection)
    for day, amount in ahead.items():
        projection[day] = projection.get(day, ZERO) + amount
    extra = booked + _q(sum(ahead.values(), ZERO))
    if usage.method == "no data":
        method = "fixed charges only, counted as booked (no usage to extrapolate)"
    else:
        method = f"{usage.method}; fixed charges counted as booked, not extrapolated"
    return Forecast(
        month_to_date=usage.month_to_date + booked,
        projected_total=usage.projected_total + extra,
        low=usage.low + extra,
        high=usage.high + extra,
        days_elapsed=usage.days_elapsed,
        days_in_month=days_in_month,
        method=method,
        daily_projection=sorted(projection.items()),
    )


def _forecast_usage(
    *, daily_spend: Mapping[date, Decimal], today: date, history: Mapping[date, Decimal]
) -> Forecast:
    """The forecast of usage-based spend alone (forecast_month_end without fixed charges)."""
    days_in_month = calendar.monthrange(today.year, today.month)[1]
    month_start = today.replace(day=1)
    month_end = today.replace(day=days_in_month)
    days_elapsed = today.day - 1
    month_to_date = _q(sum((v for d, v in daily_spend.items() if month_start <= d <= today), ZERO))
    spent_today = daily_spend.get(today, ZERO)

    has_data = any(d <= today for d in daily_spend) or any(d < today for d in history)
    if not has_data:
        return Forecast(ZERO, ZERO, ZERO, ZERO, days_elapsed, days_in_month, "no data", [])

    known = _complete_days(daily_spend, history, month_start, today)
    if not known:
        # First day of the month with no history: a partial day is too little to extrapolate.
        return Forecast(
            month_to_date,
            month_to_date,
            month_to_date,
            month_to_date,
            days_elapsed,
            days_in_month,
            "no complete day yet; showing spend so far",
            [],
        )

    factors = _weekday_factors(known)
    factor_of = {wd: (factors[wd] if factors else ONE) for wd in range(7)}
    # Deseasonalise; days whose weekday normally sees no spend carry no information on level.
    adjusted = [(d, v / factor_of[d.weekday()]) for d, v in known if factor_of[d.weekday()] > 0]
    window = known[-TREND_WINDOW_DAYS:]
    trend = _fit_trend([p for p in adjusted if p[0] >= window[0][0]], today)
    month_points = [v for d, v in adjusted if d >= month_start]
    month_mean = sum(month_points, ZERO) / len(month_points) if month_points else None
    if trend is None:  # only zero-factor days in the window; cannot happen with full weeks
        trend = _Trend(level=month_mean or ZERO, slope=ZERO, points=0)

    projection: list[tuple[date, Decimal]] = []
    for day in _days(today, month_end + timedelta(days=1)):
        base = trend.at(day, today)
        if month_mean is not None:
            base = TREND_WEIGHT * base + (ONE - TREND_WEIGHT) * month_mean
        expected = factor_of[day.weekday()] * base
        if day == today:
            expected = max(expected - spent_today, ZERO)
        projection.append((day, _q(expected)))

    projected_total = month_to_date + sum((v for _, v in projection), ZERO)
    spread = Z_P90 * _residual_sd(window, trend, factor_of, today) * Decimal(len(projection)).sqrt()
    low = _q(max(projected_total - spread, month_to_date, ZERO))
    high = _q(projected_total + spread)

    trend_kind = "linear trend" if trend.points >= MIN_TREND_POINTS else "average"
    trend_text = f"trailing {len(window)}-day {trend_kind}"
    if month_mean is not None:
        method = f"{trend_text} blended with this month's daily average ({days_elapsed} days)"
    else:
        method = f"{trend_text} (no complete day this month yet)"
    if factors:
        method += f", weighted by weekday over {min(len(known), PATTERN_MAX_DAYS) // 7} weeks"
    else:
        method += ", flat across weekdays (under two weeks of history)"
    return Forecast(
        month_to_date=month_to_date,
        projected_total=_q(projected_total),
        low=low,
        high=high,
        days_elapsed=days_elapsed,
        days_in_month=days_in_month,
        method=method,
        daily_projection=projection,
    )


def budget_forecast_message(forecast: Forecast, budget: Decimal, today: date) -> str | None:
    """Warn when the projection exceeds ``budget``; None when on track to stay within it.

    The crossing day is the first projected day on which cumulative spend goes past the budget.
    """
    if forecast.projected_total <= budget:
        return None
    excess = format_usd(forecast.projected_total - budget)
    if forecast.month_to_date > budget:
        already = format_usd(forecast.month_to_date - budget)
        return (
            f"Already over the budget by {already}; on track to exceed it by {excess} "
            "by the end of the month."
        )
    running = forecast.month_to_date
    crossing = today
    for day, amount in forecast.daily_projection:
        running += amount
        if running > budget:
            crossing = day
            break
    when = "today" if crossing == today else crossing.strftime("%b %d").replace(" 0", " ")
    return f"On track to exceed the budget by {excess} around day {crossing.day} ({when})."
