"""Input bounds: the one definition of the range every money and quantity field accepts.

Every write path checks its figures against these (forms, the API, ingestion, the proxy, sync,
the admin, the true-up) and the database enforces the same ranges as CHECK constraints
generated from them (`check_constraint`), so a value outside is refused with the field named
and never stored. The README's "Input bounds" section states them.

Why these figures: far above anything real, far below what breaks a column. Every bound, with
its decimal places, fits the column's max_digits, and SQLite (which keeps a DECIMAL as a double,
15 significant digits) rounds an in-bound value to at most the bound itself, which still reads
back within max_digits. Bounds are inclusive at both ends.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models


@dataclass(frozen=True)
class Bound:
    """An inclusive range [low, high]; `places` is the column's decimal places (0: whole)."""

    low: Decimal
    high: Decimal
    places: int
    unit: str

    @property
    def whole(self) -> bool:
        return self.places == 0

    def describe(self) -> str:
        return f"from {_plain(self.low)} to {_plain(self.high)} {self.unit}".rstrip()

    def __post_init__(self) -> None:
        # Plain ints for whole bounds: the common case (an int count) compares int to int.
        low, high = (int(self.low), int(self.high)) if self.whole else (self.low, self.high)
        object.__setattr__(self, "_low", low)
        object.__setattr__(self, "_high", high)

    def problem(self, value: Any) -> str | None:
        """Why `value` is not acceptable (a sentence), or None when it is. None stays None."""
        kind = type(value)
        if kind is int or kind is Decimal:  # nearly always: checked without conversion
            number = value
        elif value is None:
            return None
        elif isinstance(value, bool) or not isinstance(value, int | Decimal | float | str):
            return "must be a number"
        else:
            try:
                number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
            except (InvalidOperation, ValueError):
                return "must be a number"
        if kind is not int:
            if not number.is_finite():
                return "must be a finite number"
            if self.whole and number != number.to_integral_value():
                return "must be a whole number"
        if not self._low <= number <= self._high:
            return f"must be {self.describe()}"
        # Extra decimal places of an amount are not refused here: the column rounds them
        # (forms and the API refuse them with their decimal_places, from form_kwargs).
        return None

    def validators(self) -> list:
        """Django validators (model and form fields): the range; places come from the field."""
        low = int(self.low) if self.whole else self.low
        high = int(self.high) if self.whole else self.high
        return [MinValueValidator(low), MaxValueValidator(high)]

    def form_kwargs(self) -> dict:
        """min_value/max_value (and decimal_places) for a form or serializer field."""
        if self.whole:
            return {"min_value": int(self.low), "max_value": int(self.high)}
        return {"min_value": self.low, "max_value": self.high, "decimal_places": self.places}

    def condition(self, field: str, *, nullable: bool = False) -> models.Q:
        low = int(self.low) if self.whole else self.low
        high = int(self.high) if self.whole else self.high
        q = models.Q(**{f"{field}__gte": low, f"{field}__lte": high})
        return models.Q(**{f"{field}__isnull": True}) | q if nullable else q


def _plain(value: Decimal) -> str:
    return f"{value:,f}"


_D = Decimal

# Token counts of one record (a request, or one day × model × line item of an organisation):
# ten trillion. The daily roll-up's BIGINT then holds 900,000 such records a day.
TOKENS = Bound(_D(0), _D(10) ** 13, 0, "tokens")
# Requests, web searches, images of one record: a billion (the column is a 32-bit INTEGER).
COUNT = Bound(_D(0), _D(10) ** 9, 0, "")
# Seats on one line: ten million.
SEATS = Bound(_D(0), _D(10) ** 7, 4, "seats")
# Audio of one record: ten billion seconds (317 years), to the millisecond.
AUDIO_SECONDS = Bound(_D(0), _D(10) ** 10, 3, "seconds")
# Credits on one line: ten billion, 4 places.
CREDITS = Bound(_D(0), _D(10) ** 10, 4, "credits")
# The cost of one record, USD, to 12 places: at most a trillion either way. Negative amounts
# are refunds and credits (a provider's adjustment line, a true-up below the counted total).
# A charge is a cost that cannot be negative: a manual entry a person types, a provider's
# own figure for one request.
COST = Bound(-(_D(10) ** 12), _D(10) ** 12, 12, "USD")
CHARGE = Bound(_D(0), _D(10) ** 12, 12, "USD")
# A local model's run time in one request (priced by the account's compute rate): 31 years.
DURATION_NS = Bound(_D(0), _D(10) ** 18, 0, "ns")
# A budget (Budget.amount) and an account's monthly budget, USD to the cent.
BUDGET = Bound(_D("0.01"), _D(10) ** 12, 2, "USD")
ACCOUNT_BUDGET = Bound(_D(0), _D(10) ** 12, 2, "USD")
# An invoice total typed for reconciliation (credits can make it negative).
INVOICE = Bound(-(_D(10) ** 12), _D(10) ** 12, 12, "USD")

# A price book rate (USD per token): what DECIMAL(28, 16) holds, 12 digits before the point.
RATE = Bound(_D(0), _D(10) ** 12 - 1, 16, "USD")
# A long-context tier's threshold: a prompt of more tokens than this uses the tier's rates. A
# billion (the column is a 32-bit INTEGER); context windows are a few million tokens.
CONTEXT_THRESHOLD = Bound(_D(1), _D(10) ** 9, 0, "tokens")

# Every bounded column of a price book row: its long-context tier (usage.pricing.Price).
PRICE_TIER = {
    "long_context_threshold": CONTEXT_THRESHOLD,
    "input_per_token_long": RATE,
    "cache_read_per_token_long": RATE,
    "cache_write_per_token_long": RATE,
    "cache_write_1h_per_token_long": RATE,
    "output_per_token_long": RATE,
}

# Every bounded column of a usage record.
RECORD = {
    "input_tokens": TOKENS,
    "cache_read_tokens": TOKENS,
    "cache_write_tokens": TOKENS,
    "cache_write_1h_tokens": TOKENS,
    "output_tokens": TOKENS,
    "reasoning_tokens": TOKENS,
    "request_count": COUNT,
    "seats": SEATS,
    "search_queries": COUNT,
    "images": COUNT,
    "audio_seconds": AUDIO_SECONDS,
    "credits": CREDITS,
    "cost": COST,
}

# What one proxied or ingested request reports (usage.extraction.RequestUsage), beyond the
# record's columns it fills.
REQUEST = {
    **{name: bound for name, bound in RECORD.items() if name not in ("seats", "credits", "cost")},
    "total_duration_ns": DURATION_NS,
    "provider_cost": CHARGE,
}


# Attribution tags a request may carry (ingestion's `tags`, the proxy's X-Tracker-* headers):
# these keys only, each value at most TAG_MAX_CHARS characters. A longer value is refused
# with the field named on both paths, never cut short.
TAG_KEYS = ("project", "user", "feature")
TAG_MAX_CHARS = 200
# At most this many distinct values of each tag key per account and UTC day: each value is a
# row (or more) of the attribution roll-up (usage.models.DailyAttribution), so a client tagging
# every request with a fresh id would otherwise grow it as fast as the records. A value past
# the limit is refused with the field (ingestion) or header (proxy) named, never cut short or
# merged into another; values already seen that day are always accepted. Checked by
# usage.services.tag_values, which says how exact the limit is.
TAG_MAX_VALUES = 1000


def tag_problem(value: str) -> str | None:
    """Why a tag value is refused ("at most 200 characters", control characters), or None."""
    if len(value) > TAG_MAX_CHARS:
        return f"at most {TAG_MAX_CHARS} characters"
    if not value.isprintable():
        return "control characters are not allowed"
    return None


class OutOfBounds(ValueError):
    """A figure outside its bound; `field` names it (prefixed as the caller chose)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def values_check(
    values: Mapping[str, Any] | Any, *, bounds: Mapping[str, Bound] = RECORD, prefix: str = ""
) -> None:
    """Raise OutOfBounds for the first field of `values` (a mapping or an object with those
    attributes) outside its bound. Fields absent from `values` are not checked."""
    mapping = isinstance(values, Mapping)
    for name, bound in bounds.items():
        value = values.get(name, _ABSENT) if mapping else getattr(values, name, _ABSENT)
        if type(value) is int and bound._low <= value <= bound._high:
            continue  # the common case, on the ingestion hot path
        if value is _ABSENT:
            continue
        problem = bound.problem(value)
        if problem:
            raise OutOfBounds(f"{prefix}{name}", problem)


_ABSENT = object()


def check_constraint(
    prefix: str, bounds: Mapping[str, Bound], *, nullable: Iterable[str] = ()
) -> models.CheckConstraint:
    """The CHECK constraint `<prefix>_bounds`: every field of `bounds` within its bound.

    One constraint for all of a table's fields, not one each: adding a constraint to a big
    table scans it on PostgreSQL and copies it on SQLite, once per constraint.
    """
    nullable = set(nullable)
    condition = models.Q()
    for name, bound in bounds.items():
        condition &= bound.condition(name, nullable=name in nullable)
    return models.CheckConstraint(
        condition=condition,
        name=f"{prefix}_bounds",
        violation_error_message="A figure is outside its input bound (usage/bounds.py).",
    )


def out_of_bounds_clear(
    model: type[models.Model],
    bounds: Mapping[str, Bound],
    *,
    nullable: Iterable[str] = (),
    clamp: bool = False,
) -> dict[int, dict[str, str]]:
    """Replace every stored value outside its bound (before a migration adds the CHECK).

    A nullable field becomes NULL ("unknown"); any other becomes its nearest bound with
    `clamp`, else 0. Returns {pk: {field: the value as it was stored, as text}} for the caller
    to keep a trace. The values are read as text: the ORM's own reading of a DECIMAL wider
    than its column is what fails (on SQLite).
    """
    from django.db.models.functions import Cast

    nullable = set(nullable)
    cleared: dict[int, dict[str, str]] = {}
    manager = model._default_manager
    for name, bound in bounds.items():
        outside = manager.exclude(bound.condition(name, nullable=True))
        rows = list(
            outside.annotate(_as_text=Cast(name, models.TextField())).values_list("pk", "_as_text")
        )
        if not rows:
            continue
        for pk, text in rows:
            cleared.setdefault(pk, {})[name] = text
        pks = [pk for pk, _ in rows]
        if name in nullable:
            manager.filter(pk__in=pks).update(**{name: None})
        elif clamp:
            manager.filter(pk__in=pks, **{f"{name}__gt": bound.high}).update(**{name: bound.high})
            manager.filter(pk__in=pks).exclude(**{f"{name}__gte": bound.low}).update(
                **{name: bound.low}
            )
        else:
            manager.filter(pk__in=pks).update(**{name: 0})
    return cleared
