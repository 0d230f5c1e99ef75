from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tender.domain.errors import ValidationFailed
from tender.domain.money import (
    CURRENCY_EXPONENTS,
    MAX_AMOUNT,
    UnknownCurrency,
    currency_exponent,
    format_amount,
    normalize_currency,
    percent_of,
    validate_amount,
)


@pytest.mark.parametrize(
    ("code", "exponent"),
    [
        ("USD", 2), ("EUR", 2), ("BRL", 2), ("INR", 2), ("GBP", 2), ("JPY", 0), ("KRW", 0), ("CLP", 0),
        ("VND", 0), ("ISK", 0), ("UGX", 0), ("XOF", 0), ("XAF", 0), ("XPF", 0), ("XCD", 2), ("BHD", 3),
        ("KWD", 3), ("JOD", 3), ("OMR", 3), ("TND", 3), ("LYD", 3), ("IQD", 3), ("CLF", 4), ("UYW", 4),
    ],
)  # fmt: skip
def test_known_exponents(code: str, exponent: int) -> None:
    assert CURRENCY_EXPONENTS[code] == exponent
    assert currency_exponent(code) == exponent


def test_table_shape() -> None:
    assert 150 <= len(CURRENCY_EXPONENTS) <= 180
    for code, exponent in CURRENCY_EXPONENTS.items():
        assert len(code) == 3
        assert code.isascii()
        assert code.isupper()
        assert exponent in (0, 2, 3, 4)


@pytest.mark.parametrize("code", ["XTS", "XXX", "XAU", "XAG", "XPT", "XPD", "XDR", "HRK"])
def test_non_payment_codes_are_excluded(code: str) -> None:
    assert code not in CURRENCY_EXPONENTS


@pytest.mark.parametrize("raw", ["brl", "BRL", "Brl"])
def test_normalize_currency_accepts_any_case(raw: str) -> None:
    assert normalize_currency(raw) == "BRL"


@pytest.mark.parametrize("raw", ["", "XYZ", "BR", "BRLL", " brl", "real", "XTS"])
def test_normalize_currency_rejects_unknown(raw: str) -> None:
    with pytest.raises(UnknownCurrency) as info:
        normalize_currency(raw, param="payout.currency")
    assert info.value.code == "invalid_currency"
    assert info.value.param == "payout.currency"
    assert isinstance(info.value, ValidationFailed)


def test_normalize_currency_rejects_non_strings() -> None:
    with pytest.raises(UnknownCurrency) as info:
        normalize_currency(986)  # type: ignore[arg-type]
    assert info.value.param == "currency"


def test_currency_exponent_rejects_unknown() -> None:
    with pytest.raises(UnknownCurrency):
        currency_exponent("ABC")


def test_validate_amount_accepts_positive_ints() -> None:
    assert validate_amount(1, "BRL") == 1
    assert validate_amount(2500, "BRL") == 2500
    assert validate_amount(MAX_AMOUNT, "JPY") == MAX_AMOUNT


@pytest.mark.parametrize("bad", [100.0, 25.5, "100", "2500", True, False, None, [100], {"v": 1}, Decimal(100)])
def test_validate_amount_rejects_non_ints(bad: object) -> None:
    with pytest.raises(ValidationFailed) as info:
        validate_amount(bad, "BRL", param="capture.amount")
    assert info.value.param == "capture.amount"
    assert info.value.code == "parameter_invalid"
    assert "capture.amount" in info.value.message
    assert "integer" in info.value.message


@pytest.mark.parametrize("bad", [0, -1, -2500, MAX_AMOUNT + 1, 10**30])
def test_validate_amount_rejects_out_of_range(bad: int) -> None:
    with pytest.raises(ValidationFailed) as info:
        validate_amount(bad, "BRL")
    assert info.value.param == "amount"
    assert "amount" in info.value.message


def test_validate_amount_message_gives_an_example_in_minor_units() -> None:
    with pytest.raises(ValidationFailed) as info:
        validate_amount(25.0, "brl")
    assert "2500 for 25.00 BRL" in info.value.message


@pytest.mark.parametrize(
    ("amount", "currency", "text"),
    [
        (2500, "BRL", "25.00 BRL"),
        (2500, "brl", "25.00 BRL"),
        (5, "USD", "0.05 USD"),
        (0, "EUR", "0.00 EUR"),
        (-2500, "BRL", "-25.00 BRL"),
        (-5, "USD", "-0.05 USD"),
        (2500, "JPY", "2500 JPY"),
        (-7, "JPY", "-7 JPY"),
        (1500, "BHD", "1.500 BHD"),
        (1, "BHD", "0.001 BHD"),
        (12345, "CLF", "1.2345 CLF"),
    ],
)
def test_format_amount(amount: int, currency: str, text: str) -> None:
    assert format_amount(amount, currency) == text


@given(amount=st.integers(min_value=-(10**15), max_value=10**15), currency=st.sampled_from(["JPY", "BRL", "BHD"]))
def test_format_amount_round_trips(amount: int, currency: str) -> None:
    text = format_amount(amount, currency)
    number, code = text.split(" ")
    assert code == currency
    exponent = CURRENCY_EXPONENTS[currency]
    assert ("." in number) == (exponent > 0)
    if exponent:
        assert len(number.split(".")[1]) == exponent
    assert Decimal(number).scaleb(exponent) == amount


@pytest.mark.parametrize(
    ("amount", "rate", "expected"),
    [
        (2500, "0.05", 125),
        (10, "0.05", 1),  # 0.5 rounds up
        (9, "0.05", 0),  # 0.45 rounds down
        (30, "0.05", 2),  # 1.5 -> 2
        (-10, "0.05", -1),  # ties go away from zero, like Decimal's ROUND_HALF_UP
        (-9, "0.05", 0),
        (0, "0.05", 0),
        (2500, "0", 0),
        (2500, "1", 2500),
        (1999, "0.0299", 60),  # 59.7701
        (100, "0.015", 2),  # 1.5 exactly
        (MAX_AMOUNT, "0.0123456789012345678901234567890123", 1234567890),
        # 32 significant digits: Decimal's default 28-digit context would round this to 0.5 first.
        (1, "0." + "4" + "9" * 31, 0),
    ],
)
def test_percent_of_rounds_half_up(amount: int, rate: str, expected: int) -> None:
    assert percent_of(amount, Decimal(rate), "BRL") == expected


@given(
    amount=st.integers(min_value=-MAX_AMOUNT, max_value=MAX_AMOUNT),
    rate=st.decimals(min_value=0, max_value=1, places=6),
)
def test_percent_of_matches_decimal_half_up(amount: int, rate: Decimal) -> None:
    from decimal import ROUND_HALF_UP

    expected = int((Decimal(amount) * rate).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    assert percent_of(amount, rate, "USD") == expected


def test_percent_of_refuses_floats() -> None:
    with pytest.raises(TypeError):
        percent_of(2500, 0.05, "BRL")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        percent_of(2500.0, Decimal("0.05"), "BRL")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="finite"):
        percent_of(2500, Decimal("NaN"), "BRL")
    with pytest.raises(UnknownCurrency):
        percent_of(2500, Decimal("0.05"), "ABC")
