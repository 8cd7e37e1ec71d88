from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from alerts.forecast import Forecast, budget_forecast_message, forecast_month_end, format_usd


def _series(start: date, amounts: list[str]) -> dict[date, Decimal]:
    return {start + timedelta(days=i): Decimal(a) for i, a in enumerate(amounts)}


def _weekday_series(start: date, end: date, weekday_amount: str) -> dict[date, Decimal]:
    """Weekdays cost ``weekday_amount``; weekends are absent (= $0) like in the daily roll-up."""
    days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
    return {d: Decimal(weekday_amount) for d in days if d.weekday() < 5}


def test_it_projects_a_flat_series():
    # June 2025 has 30 days. $10 on each of June 1-10, nothing yet on June 11.
    fc = forecast_month_end(
        daily_spend=_series(date(2025, 6, 1), ["10"] * 10), today=date(2025, 6, 11)
    )
    # Trend and month average are both $10/day, so June 11-30 (20 days) add 20 * $10 = $200;
    # $100 so far + $200 = $300. Every day was exactly $10, so the spread is 0: low = high = $300.
    assert fc.month_to_date == Decimal("100")
    assert fc.projected_total == Decimal("300")
    assert fc.low == Decimal("300")
    assert fc.high == Decimal("300")
    assert fc.days_elapsed == 10
    assert fc.days_in_month == 30
    assert len(fc.daily_projection) == 20
    assert fc.daily_projection[0] == (date(2025, 6, 11), Decimal("10"))
    assert fc.daily_projection[-1] == (date(2025, 6, 30), Decimal("10"))
    assert "flat across weekdays" in fc.method


def test_it_gives_a_p10_p90_range_from_daily_noise():
    # June 1-5: $11, $9, $11, $9, $10; today is June 6 with nothing spent yet.
    fc = forecast_month_end(
        daily_spend=_series(date(2025, 6, 1), ["11", "9", "11", "9", "10"]),
        today=date(2025, 6, 6),
    )
    # Under 7 points the trend is the mean, $10, as is the month average. June 6-30 is 25 days:
    # $50 + 25 * $10 = $300. Residuals +1, -1, +1, -1, 0 -> variance 4 / (5 - 1) = 1, sd = $1.
    # Half-width = 1.2816 * $1 * sqrt(25) = $6.408 -> low $293.592, high $306.408.
    assert fc.projected_total == Decimal("300")
    assert fc.low == Decimal("293.592")
    assert fc.high == Decimal("306.408")
    assert "average" in fc.method


def test_it_follows_a_linear_trend():
    # June 1-10 cost $1, $2, ..., $10 (day n costs $n); today is June 11, nothing spent yet.
    spend = {date(2025, 6, n): Decimal(n) for n in range(1, 11)}
    fc = forecast_month_end(daily_spend=spend, today=date(2025, 6, 11))
    # Month to date = 1 + ... + 10 = $55. The fitted trend says day d costs $d; the month
    # average is $5.50. Each remaining day is the 50/50 blend (d + 5.5) / 2, so June 11-30 add
    # (sum(11..30) + 20 * 5.5) / 2 = (410 + 110) / 2 = $260. Total $55 + $260 = $315.
    assert fc.month_to_date == Decimal("55")
    assert fc.projected_total == Decimal("315")
    assert fc.daily_projection[0] == (date(2025, 6, 11), Decimal("8.25"))  # (11 + 5.5) / 2
    assert fc.daily_projection[-1] == (date(2025, 6, 30), Decimal("17.75"))  # (30 + 5.5) / 2
    # The line fits exactly, so there is no spread.
    assert fc.low == fc.high == Decimal("315")
    assert "linear trend" in fc.method


def test_it_respects_the_weekday_pattern():
    # Oct 2025 starts on a Wednesday and has 31 days. Four weeks of history (Sep 17 - Oct 14)
    # with $10 on weekdays and $0 at weekends; $4 spent so far today, Wednesday Oct 15.
    today = date(2025, 10, 15)
    history = _weekday_series(date(2025, 9, 17), date(2025, 10, 14), "10")
    spend = {d: v for d, v in history.items() if d.month == 10} | {today: Decimal("4")}
    fc = forecast_month_end(daily_spend=spend, today=today, history=history)
    # Oct 1-14 hold 10 weekdays (1-3, 6-10, 13-14): $100 + $4 today = $104 so far.
    # Weekday factor = $10 / ($50 / 7) = 1.4, weekend factor 0, so a weekday is expected at $10.
    # Today: $10 - $4 already spent = $6. Oct 16-31 hold 12 weekdays (16-17, 20-24, 27-31):
    # 12 * $10 = $120. Total $104 + $6 + $120 = $230 (a flat $50/7 a day would say ~$225).
    assert fc.month_to_date == Decimal("104")
    assert fc.projected_total == Decimal("230")
    assert fc.days_elapsed == 14
    projected = dict(fc.daily_projection)
    assert projected[today] == Decimal("6")
    assert projected[date(2025, 10, 18)] == Decimal("0")  # Saturday
    assert projected[date(2025, 10, 20)] == Decimal("10")  # Monday
    assert fc.low == fc.high == Decimal("230")
    assert "weighted by weekday over 4 weeks" in fc.method


def test_it_ignores_the_weekday_pattern_with_under_two_weeks_of_history():
    # Oct 1-10: weekdays $10, weekend $0 -- only 10 days, too few to trust a weekday pattern.
    spend = _weekday_series(date(2025, 10, 1), date(2025, 10, 10), "10")
    fc = forecast_month_end(daily_spend=spend, today=date(2025, 10, 11))
    # Saturday Oct 11 still gets a share of spend; with a pattern it would be $0.
    assert dict(fc.daily_projection)[date(2025, 10, 11)] > 0
    assert "flat across weekdays" in fc.method


def test_it_projects_the_first_day_of_the_month_from_history():
    # Jul 2025 has 31 days. June 17-30 cost $10 a day; $3 spent so far on Jul 1.
    history = _series(date(2025, 6, 17), ["10"] * 14)
    fc = forecast_month_end(
        daily_spend={date(2025, 7, 1): Decimal("3")}, today=date(2025, 7, 1), history=history
    )
    # No complete day this month, so only the 14-day trend ($10/day) is used.
    # Today: $10 - $3 = $7; Jul 2-31: 30 * $10 = $300. Total $3 + $7 + $300 = $310.
    assert fc.days_elapsed == 0
    assert fc.month_to_date == Decimal("3")
    assert fc.projected_total == Decimal("310")
    assert fc.daily_projection[0] == (date(2025, 7, 1), Decimal("7"))
    assert len(fc.daily_projection) == 31
    assert "no complete day this month yet" in fc.method


def test_it_shows_spend_so_far_on_the_first_day_without_history():
    fc = forecast_month_end(daily_spend={date(2025, 7, 1): Decimal("3")}, today=date(2025, 7, 1))
    # A partial day is not extrapolated: the projection is the $3 already spent.
    assert fc.projected_total == fc.low == fc.high == Decimal("3")
    assert fc.daily_projection == []
    assert fc.method.startswith("no complete day yet")


def test_it_returns_zeros_with_no_data():
    fc = forecast_month_end(daily_spend={}, today=date(2025, 2, 10), history={})
    assert fc == Forecast(
        month_to_date=Decimal("0"),
        projected_total=Decimal("0"),
        low=Decimal("0"),
        high=Decimal("0"),
        days_elapsed=9,
        days_in_month=28,
        method="no data",
        daily_projection=[],
    )


def test_it_finishes_the_month_on_its_last_day():
    # June 1-29 cost $10 a day; $4 spent so far on June 30, the last day.
    spend = _series(date(2025, 6, 1), ["10"] * 29) | {date(2025, 6, 30): Decimal("4")}
    fc = forecast_month_end(daily_spend=spend, today=date(2025, 6, 30))
    # $290 + $4 = $294 so far; only today remains: $10 - $4 = $6 -> $300.
    assert fc.days_elapsed == 29
    assert fc.month_to_date == Decimal("294")
    assert fc.daily_projection == [(date(2025, 6, 30), Decimal("6"))]
    assert fc.projected_total == fc.low == fc.high == Decimal("300")


def test_it_never_projects_less_than_already_spent_today():
    # As above but $12 already spent today, more than a usual day: nothing more is expected.
    spend = _series(date(2025, 6, 1), ["10"] * 29) | {date(2025, 6, 30): Decimal("12")}
    fc = forecast_month_end(daily_spend=spend, today=date(2025, 6, 30))
    # $290 + $12 = $302, plus max($10 - $12, $0) = $0.
    assert fc.projected_total == Decimal("302")
    assert fc.daily_projection == [(date(2025, 6, 30), Decimal("0"))]


def test_it_keeps_the_low_end_at_or_above_month_to_date():
    # June 1-13: $0 every day except $1,300 on June 7; today is June 14, nothing spent yet.
    spend = {date(2025, 6, n): Decimal("0") for n in range(1, 14)} | {
        date(2025, 6, 7): Decimal("1300")
    }
    fc = forecast_month_end(daily_spend=spend, today=date(2025, 6, 14))
    # The spike sits mid-window, so the fitted slope is 0 and the level is the mean, $100.
    # Projected: $1,300 + 17 days * $100 = $3,000.
    # Residuals: +1200 once, -100 twelve times -> sd = sqrt(1,560,000 / 11) ~ $376.6;
    # spread = 1.2816 * 376.6 * sqrt(17) ~ $1,990, so p10 would be ~$1,010 < $1,300 spent.
    assert fc.month_to_date == Decimal("1300")
    assert fc.projected_total == Decimal("3000")
    assert fc.low == Decimal("1300")
    assert Decimal("4980") < fc.high < Decimal("5000")


def test_it_returns_decimals_everywhere():
    fc = forecast_month_end(
        daily_spend=_series(date(2025, 6, 1), ["1.1", "2.3", "0.7"]), today=date(2025, 6, 4)
    )
    values = [fc.month_to_date, fc.projected_total, fc.low, fc.high]
    values += [v for _, v in fc.daily_projection]
    assert all(isinstance(v, Decimal) for v in values)


def test_it_says_when_the_budget_will_be_crossed():
    fc = forecast_month_end(
        daily_spend=_series(date(2025, 6, 1), ["10"] * 10), today=date(2025, 6, 11)
    )
    # $100 by June 10, +$10 a day: June 25 ends at $250 (not over), June 26 at $260.
    # Projected $300 - budget $250 = $50 over.
    message = budget_forecast_message(fc, Decimal("250"), date(2025, 6, 11))
    assert message == "On track to exceed the budget by $50.00 around day 26 (Jun 26)."


def test_it_says_nothing_when_the_projection_fits_the_budget():
    fc = forecast_month_end(
        daily_spend=_series(date(2025, 6, 1), ["10"] * 10), today=date(2025, 6, 11)
    )
    # Projected exactly $300: reaching the budget is not exceeding it.
    assert budget_forecast_message(fc, Decimal("300"), date(2025, 6, 11)) is None


def test_it_says_when_the_budget_is_already_exceeded():
    fc = forecast_month_end(
        daily_spend=_series(date(2025, 6, 1), ["10"] * 10), today=date(2025, 6, 11)
    )
    # $100 spent against $80: $20 over already; $300 - $80 = $220 over by month end.
    message = budget_forecast_message(fc, Decimal("80"), date(2025, 6, 11))
    assert message == (
        "Already over the budget by $20.00; "
        "on track to exceed it by $220.00 by the end of the month."
    )


def test_it_formats_money_for_messages():
    assert format_usd(Decimal("1234.5")) == "$1,234.50"
    assert format_usd(Decimal("-3")) == "-$3.00"
    assert format_usd(Decimal("0.005")) == "$0.01"  # half-up, as on an invoice
    assert format_usd(Decimal("0.00015"), significant=3) == "$0.000150"


def test_it_counts_fixed_charges_once_and_extrapolates_usage_only():
    # June 2025: $190 of seats booked on June 1, $5 of usage on each of June 1-10; today June 11.
    fc = forecast_month_end(
        daily_spend=_series(date(2025, 6, 1), ["5"] * 10),
        fixed={date(2025, 6, 1): Decimal("190")},
        today=date(2025, 6, 11),
    )
    # Usage: $50 so far + 20 days x $5 = $100 to come, no spread. Fixed: $190 once.
    # Total $190 + $50 + $100 = $340 (as daily spend, the $190 would have raised this month's
    # average by $19 a day).
    assert fc.month_to_date == Decimal("240")
    assert fc.projected_total == Decimal("340")
    assert (fc.low, fc.high) == (Decimal("340"), Decimal("340"))
    assert "fixed charges counted as booked" in fc.method
    assert fc.month_to_date + sum(v for _, v in fc.daily_projection) == fc.projected_total


def test_it_adds_committed_fixed_charges_on_their_days():
    # Only a prorated seat line: $3 a day booked June 1-10, $3 a day committed for June 11-30.
    fc = forecast_month_end(
        daily_spend={},
        fixed={date(2025, 6, d): Decimal("3") for d in range(1, 11)},
        fixed_ahead={date(2025, 6, d): Decimal("3") for d in range(11, 31)},
        today=date(2025, 6, 11),
    )
    # $30 booked + 20 x $3 = $60 committed -> $90, no range; the $3 days run to June 30.
    assert fc.month_to_date == Decimal("30")
    assert fc.projected_total == Decimal("90")
    assert (fc.low, fc.high) == (Decimal("90"), Decimal("90"))
    assert fc.daily_projection[0] == (date(2025, 6, 11), Decimal("3"))
    assert fc.daily_projection[-1] == (date(2025, 6, 30), Decimal("3"))
    assert fc.method.startswith("fixed charges only")
