"""Exact money arithmetic in the database on both backends.

PostgreSQL sums NUMERIC exactly. SQLite stores a DECIMAL column as REAL and its SUM() adds
floats, so one million $0.00000015 rows come out as 0.15000000000209981. On SQLite we register
`decimal_sum` / `decimal_add`, which add the stored values as Python Decimals; each stored
value round-trips exactly up to 15 significant digits (e.g. $999.999999999999).
"""

from __future__ import annotations

from decimal import Context, Decimal, InvalidOperation

from django.db import models
from django.db.backends.signals import connection_created
from django.dispatch import receiver


def _to_decimal(value) -> Decimal:
    # repr() gives the shortest string that round-trips the stored double.
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value))


class _DecimalSum:
    def __init__(self) -> None:
        self.total = Decimal(0)
        self.seen = False

    def step(self, value) -> None:
        if value is not None:
            self.seen = True
            self.total += _to_decimal(value)

    def finalize(self) -> str | None:
        return str(self.total) if self.seen else None


def _decimal_add(a, b) -> str | None:
    if a is None and b is None:
        return None
    return str((_to_decimal(a) if a is not None else 0) + (_to_decimal(b) if b is not None else 0))


@receiver(connection_created)
def _register_sqlite_functions(sender, connection, **kwargs) -> None:
    if connection.vendor == "sqlite":
        connection.connection.create_aggregate("decimal_sum", 1, _DecimalSum)
        connection.connection.create_function("decimal_add", 2, _decimal_add, deterministic=True)
        _tolerate_wide_decimals(connection.ops)


def _tolerate_wide_decimals(ops) -> None:
    """Read any number a SQLite DECIMAL column holds, instead of failing the page.

    SQLite keeps whatever REAL it is given: a value stored before the input bounds existed
    (usage/bounds.py), or a roll-up summed past its column, can have more digits than the
    column's max_digits, and Django's converter then raises InvalidOperation on every read
    (History, the admin, the export...). Such a value is read as it is, unquantized.
    PostgreSQL's NUMERIC(p, s) cannot hold one at all.
    """
    if getattr(ops, "_wide_decimals_tolerated", False):
        return
    converter_for = ops.get_decimalfield_converter

    def get_decimalfield_converter(expression):
        strict = converter_for(expression)

        def converter(value, expression, connection):
            try:
                return strict(value, expression, connection)
            except InvalidOperation:
                return _to_decimal(value)

        return converter

    ops.get_decimalfield_converter = get_decimalfield_converter
    ops._wide_decimals_tolerated = True


class _DecimalResult(models.DecimalField):
    """Output field for MoneySum: SQLite hands back a string, PostgreSQL a Decimal."""

    def get_internal_type(self) -> str:
        return "TextField"  # keeps SQLite's float-based decimal converter away

    def from_db_value(self, value, expression, connection):
        return None if value is None else Decimal(str(value))


class MoneySum(models.Aggregate):
    """SUM() of a money column, exact on SQLite and PostgreSQL. NULL rows are skipped."""

    function = "SUM"
    name = "MoneySum"

    def __init__(self, expression, **extra):
        super().__init__(expression, output_field=_DecimalResult(), **extra)

    def as_sqlite(self, compiler, connection, **extra_context):
        return super().as_sql(compiler, connection, function="decimal_sum", **extra_context)


MONEY_QUANTUM = Decimal("1e-12")
# Wide enough to quantize any amount to 12 places, even one stored before the input bounds.
WIDE = Context(prec=80)


def money_str(value: Decimal | None) -> str | None:
    """Money for JSON: a string with the column's 12 places on every backend (None = unpriced)."""
    if value is None:
        return None
    value = Decimal(value)
    if not value.is_finite():
        return str(value)
    return str(value.quantize(MONEY_QUANTUM, context=WIDE))
