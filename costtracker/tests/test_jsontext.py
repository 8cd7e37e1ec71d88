"""Hot-path JSON text: exact Decimals, times, and numbers orjson alone cannot write."""

from datetime import UTC, datetime
from decimal import Decimal

from costtracker.jsontext import dumps, dumps_bytes


def test_it_writes_decimals_as_exact_strings_and_times_as_iso_8601():
    value = {"cost": Decimal("0.000000150000"), "at": datetime(2026, 11, 15, 10, 30, tzinfo=UTC)}
    # str(Decimal): exact, in Decimal's own notation (PostgreSQL's numeric reads it too).
    assert dumps(value) == '{"cost":"1.50000E-7","at":"2026-11-15T10:30:00+00:00"}'
    assert dumps_bytes(["ü"]) == '["ü"]'.encode()


def test_it_falls_back_for_integers_beyond_64_bits():
    # A client may send any number in a field kept only for audit; it must not fail the event.
    assert (
        dumps({"n": 10**30, "d": Decimal("1.5")})
        == '{"n":1000000000000000000000000000000,"d":"1.5"}'
    )
