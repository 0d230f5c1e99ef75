"""The dashboard's amount field (a refund's or a capture's, typed in major units): minor units exactly, never a
float, and every malformed number a 400 naming the field (sNaN and huge exponents used to raise: a 5xx)."""

from __future__ import annotations

import pytest

from tender.errors import InvalidRequest
from tender.services.dashboard import parse_amount


@pytest.mark.parametrize(
    ("text", "currency", "minor"),
    [("12.50", "BRL", 1250), ("0.01", "USD", 1), ("500", "JPY", 500), ("1.234", "BHD", 1234), ("", "BRL", None)],
)
def test_major_units_become_minor_units_exactly(text: str, currency: str, minor: int | None) -> None:
    assert parse_amount(text, currency) == minor


@pytest.mark.parametrize(
    "text", ["sNaN", "NaN", "Infinity", "-Infinity", "1e999999999", "12.505", "abc", "-1", "0", "1e-999999999"]
)
def test_anything_else_is_a_400_naming_the_field(text: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        parse_amount(text, "BRL")
    assert refused.value.param == "amount"
