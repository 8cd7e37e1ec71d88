"""The one place money is rounded: for display."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation

from django import template

register = template.Library()


@register.filter
def money(value, places: int = 2) -> str:
    """$1,234.57; small non-zero amounts keep enough digits to not read as $0.00.

    None means "unpriced" and says so: it is never shown as $0.
    """
    if value is None or value == "":
        return "unpriced"
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return str(value)
    places = wanted = int(places)
    if amount and abs(amount) < Decimal(1).scaleb(-places):
        # e.g. $0.00002 stays visible (two significant digits) instead of rounding to $0.00
        places = -amount.adjusted() + 1
    if not amount.is_finite():
        return str(value)
    # A context as wide as the amount: a figure stored before the input bounds still shows.
    wide = Context(prec=max(28, amount.adjusted() + places + 2))
    q = amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP, context=wide)
    text = f"{abs(q):,.{places}f}"
    if places > wanted:
        text = text.rstrip("0")
    return f"{'-' if q < 0 else ''}${text}"


@register.filter
def pct(value) -> str:
    return "—" if value is None else f"{value}%"
