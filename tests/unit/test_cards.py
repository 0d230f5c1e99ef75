from __future__ import annotations

import dataclasses
from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tender.domain.cards import (
    ValidatedCard,
    card_brand,
    card_funding,
    luhn_valid,
    normalize_number,
    validate_card,
)
from tender.domain.errors import CardInvalid, DomainError, ValidationFailed

TODAY = date(2026, 11, 23)
FULLWIDTH_4242 = "\uff14\uff12" * 8  # isdigit() is true for these

# (number, brand, funding) for every test card in API.md.
API_TEST_CARDS = [
    ("4242424242424242", "visa", "credit"),
    ("5555555555554444", "mastercard", "credit"),
    ("4000056655665556", "visa", "debit"),
    ("4000000000000002", "visa", "credit"),
    ("4000000000009995", "visa", "credit"),
    ("4000000000009987", "visa", "credit"),
    ("4000000000000069", "visa", "credit"),
    ("4000000000000127", "visa", "credit"),
    ("4000002760003184", "visa", "credit"),
]


def card(**overrides: object) -> ValidatedCard:
    fields: dict[str, object] = {
        "number": "4242424242424242",
        "exp_month": 12,
        "exp_year": 2030,
        "cvc": "123",
        "holder_name": "Ana Souza",
    }
    fields.update(overrides)
    return validate_card(today=TODAY, **fields)  # type: ignore[arg-type]


def card_error(**overrides: object) -> ValidationFailed:
    with pytest.raises(ValidationFailed) as info:
        card(**overrides)
    return info.value


def with_check_digit(body: str) -> str:
    for digit in "0123456789":
        if luhn_valid(body + digit):
            return body + digit
    raise AssertionError("no check digit")


# --- Luhn -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("number", "brand", "funding"), API_TEST_CARDS)
def test_api_test_cards(number: str, brand: str, funding: str) -> None:
    assert luhn_valid(number)
    assert card_brand(number) == brand
    assert card_funding(number) == funding
    validated = card(number=number)
    assert (validated.brand, validated.funding, validated.last4) == (brand, funding, number[-4:])


@pytest.mark.parametrize("number", ["4242424242424241", "5555555555554445", "0000000000000001", "", "42a2"])
def test_luhn_rejects(number: str) -> None:
    assert not luhn_valid(number)


def test_luhn_rejects_non_ascii_digits() -> None:
    assert not luhn_valid(FULLWIDTH_4242)
    assert not luhn_valid("4242²")


@given(body=st.text(alphabet="0123456789", min_size=11, max_size=18), data=st.data())
def test_luhn_catches_any_single_digit_change(body: str, data: st.DataObject) -> None:
    number = with_check_digit(body)
    assert luhn_valid(number)
    index = data.draw(st.integers(min_value=0, max_value=len(number) - 1))
    replacement = data.draw(st.sampled_from([d for d in "0123456789" if d != number[index]]))
    changed = number[:index] + replacement + number[index + 1 :]
    assert not luhn_valid(changed)


# --- brand and funding -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "brand"),
    [
        ("378282246310005", "amex"),
        ("371449635398431", "amex"),
        ("5200828282828210", "mastercard"),
        ("5105105105105100", "mastercard"),
        ("2223003122003222", "mastercard"),
        ("2221000000000009", "mastercard"),
        ("2720990000000007", "mastercard"),
        ("2220990000000000", "unknown"),
        ("2721000000000000", "unknown"),
        ("5600000000000000", "unknown"),
        ("6011111111111117", "discover"),
        ("6011000990139424", "discover"),
        ("6500000000000002", "discover"),
        ("3056930009020004", "diners"),
        ("36227206271667", "diners"),
        ("3566002020360505", "jcb"),
        ("6200000000000005", "unionpay"),
        ("9999999999999995", "unknown"),
        ("12", "unknown"),
        ("abcd", "unknown"),
    ],
)
def test_card_brand(number: str, brand: str) -> None:
    assert card_brand(number) == brand


def test_card_funding_comes_from_the_bin() -> None:
    assert card_funding("4000056655665556") == "debit"
    assert card_funding("5200828282828210") == "debit"
    assert card_funding("5105105105105100") == "prepaid"
    assert card_funding("4242424242424242") == "credit"
    assert card(number="4000056655665556").funding == "debit"


def test_a_declared_funding_is_not_an_argument() -> None:
    # Funding decides the fee: validation takes none from the request (issue 11, finding 2).
    with pytest.raises(TypeError):
        validate_card(  # type: ignore[call-arg]
            number="4242424242424242", exp_month=12, exp_year=2030, cvc="123", holder_name=None, funding="debit",
            today=TODAY,
        )  # fmt: skip


# --- number ------------------------------------------------------------------------------------


def test_normalize_number() -> None:
    assert normalize_number("4242 4242-4242 4242") == "4242424242424242"
    assert normalize_number("4242.4242") == "4242.4242"


def test_spaced_number_is_accepted() -> None:
    assert card(number="4242 4242 4242 4242").number == "4242424242424242"
    assert card(number="4242-4242-4242-4242").last4 == "4242"


@pytest.mark.parametrize(
    "bad",
    [
        4242424242424242,
        None,
        "",
        "424242424242424a",
        "42424242424",
        "4" * 20,
        FULLWIDTH_4242,
        "4242.4242.4242.4242",
    ],
)
def test_malformed_number(bad: object) -> None:
    error = card_error(number=bad)
    assert isinstance(error, CardInvalid)
    assert (error.code, error.param) == ("invalid_number", "payment_method.card.number")


def test_luhn_failure_is_incorrect_number() -> None:
    error = card_error(number="4242424242424241")
    assert (error.code, error.param) == ("incorrect_number", "payment_method.card.number")


def test_param_prefix() -> None:
    with pytest.raises(CardInvalid) as info:
        validate_card(
            number="4242424242424241", exp_month=1, exp_year=2030, cvc="123", holder_name=None,
            today=TODAY, param_prefix="card",
        )  # fmt: skip
    assert info.value.param == "card.number"


# --- expiry ------------------------------------------------------------------------------------


def test_card_is_valid_through_its_expiry_month() -> None:
    assert card(exp_month=11, exp_year=2026).exp_month == 11
    last_day = validate_card(
        number="4242424242424242", exp_month=11, exp_year=2026, cvc="123", holder_name=None,
        today=date(2026, 11, 30),
    )  # fmt: skip
    assert last_day.exp_year == 2026


def test_previous_month_is_expired() -> None:
    error = card_error(exp_month=10, exp_year=2026)
    assert (error.code, error.param) == ("invalid_expiry_month", "payment_method.card.exp_month")
    with pytest.raises(CardInvalid) as info:
        validate_card(
            number="4242424242424242", exp_month=11, exp_year=2026, cvc="123", holder_name=None,
            today=date(2026, 12, 1),
        )  # fmt: skip
    assert info.value.code == "invalid_expiry_month"


def test_previous_year_is_expired() -> None:
    error = card_error(exp_month=12, exp_year=2025)
    assert (error.code, error.param) == ("invalid_expiry_year", "payment_method.card.exp_year")
    with pytest.raises(CardInvalid) as info:
        validate_card(
            number="4242424242424242", exp_month=12, exp_year=2026, cvc="123", holder_name=None,
            today=date(2027, 1, 1),
        )  # fmt: skip
    assert info.value.code == "invalid_expiry_year"


@pytest.mark.parametrize("bad", [0, 13, -1, "12", 12.0, True, None])
def test_bad_month(bad: object) -> None:
    error = card_error(exp_month=bad)
    assert (error.code, error.param) == ("invalid_expiry_month", "payment_method.card.exp_month")


@pytest.mark.parametrize("bad", [30, 26, 999, 2077, 10000, "2030", 2030.0, True, None])
def test_bad_year(bad: object) -> None:
    error = card_error(exp_year=bad)
    assert (error.code, error.param) == ("invalid_expiry_year", "payment_method.card.exp_year")


def test_year_up_to_fifty_years_ahead() -> None:
    assert card(exp_year=2076).exp_year == 2076


@given(
    today=st.dates(min_value=date(2000, 1, 1), max_value=date(2100, 12, 31)),
    month=st.integers(min_value=1, max_value=12),
    year_offset=st.integers(min_value=-3, max_value=3),
)
def test_expiry_rule(today: date, month: int, year_offset: int) -> None:
    year = today.year + year_offset
    kwargs: dict[str, object] = {
        "number": "4242424242424242", "exp_month": month, "exp_year": year, "cvc": "123", "holder_name": None,
    }  # fmt: skip
    if (year, month) >= (today.year, today.month):
        assert validate_card(today=today, **kwargs).exp_year == year  # type: ignore[arg-type]
    else:
        with pytest.raises(CardInvalid) as info:
            validate_card(today=today, **kwargs)  # type: ignore[arg-type]
        expected = "invalid_expiry_year" if year < today.year else "invalid_expiry_month"
        assert info.value.code == expected


# --- cvc ---------------------------------------------------------------------------------------


def test_cvc_shapes() -> None:
    assert card(cvc="123").cvc == "123"
    assert card(cvc="012").cvc == "012"  # leading zero kept
    assert card(number="378282246310005", cvc="1234").cvc == "1234"


@pytest.mark.parametrize(
    ("number", "bad"),
    [
        ("4242424242424242", "1234"),
        ("4242424242424242", "12"),
        ("4242424242424242", 123),
        ("4242424242424242", "12a"),
        ("4242424242424242", ""),
        ("4242424242424242", None),
        ("4242424242424242", "\uff11\uff12\uff13"),  # fullwidth 123
        ("378282246310005", "123"),
        ("378282246310005", 1234),
    ],
)
def test_bad_cvc(number: str, bad: object) -> None:
    error = card_error(number=number, cvc=bad)
    assert (error.code, error.param) == ("invalid_cvc", "payment_method.card.cvc")


# --- holder name -------------------------------------------------------------------------------


def test_holder_name() -> None:
    assert card(holder_name=None).holder_name is None
    assert card(holder_name="").holder_name is None
    assert card(holder_name="  José da Silva ").holder_name == "José da Silva"
    assert card(holder_name="x" * 200).holder_name == "x" * 200


@pytest.mark.parametrize("bad", ["x" * 201, 42, ["Ana"], "Ana\nSouza", "Ana\x00"])
def test_bad_holder_name(bad: object) -> None:
    error = card_error(holder_name=bad)
    assert error.param == "payment_method.card.holder_name"


# --- secrecy -----------------------------------------------------------------------------------


def test_repr_and_str_hide_the_card() -> None:
    validated = card(number="5555 5555 5555 4444", cvc="987")
    for text in (repr(validated), str(validated), f"{validated}", f"{validated!r}", repr([validated])):
        assert "5555555555554444" not in text
        assert "555555" not in text
        assert "987" not in text
        assert "4444" in text
        assert "mastercard" in text
    assert not hasattr(validated, "__dict__")
    with pytest.raises(dataclasses.FrozenInstanceError):
        validated.number = "4242424242424242"  # type: ignore[misc]


SECRET_CVC = "987"


@given(
    number=st.text(alphabet="0123456789 -", min_size=12, max_size=22),
    month=st.one_of(st.integers(min_value=-1, max_value=14), st.just("1")),
    year=st.integers(min_value=2020, max_value=2080),
    cvc=st.sampled_from([SECRET_CVC, "9876", "98", "98a"]),
)
def test_error_messages_never_contain_the_number_or_cvc(number: str, month: object, year: int, cvc: str) -> None:
    try:
        validate_card(number=number, exp_month=month, exp_year=year, cvc=cvc, holder_name="Ana", today=TODAY)
    except DomainError as error:
        digits = normalize_number(number)
        for text in (error.message, str(error), repr(error), repr(error.args)):
            if len(digits) >= 6:
                assert digits not in text
                assert number.strip() not in text
            assert cvc not in text


@pytest.mark.parametrize(
    "overrides",
    [
        {"number": "4242424242424241"},
        {"number": "4242424242424242x"},
        {"cvc": "9999"},
        {"exp_month": 1, "exp_year": 2026},
        {"exp_year": 2000},
        {"holder_name": "x" * 300},
    ],
)
def test_known_error_messages_hide_secrets(overrides: dict[str, object]) -> None:
    error = card_error(**overrides)
    number = str(overrides.get("number", "4242424242424242"))
    assert number not in error.message
    assert number[:-1] not in error.message
    assert str(overrides.get("cvc", "123")) not in error.message
    assert error.param is not None
    assert error.param in error.message
