"""Card rules: the synchronous checks done before anything is charged.

A card number or CVC must never reach a message, a repr or a log line: every message below is a
fixed template that names the parameter only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from tender.domain.bins import Funding, funding_of_number
from tender.domain.errors import (
    IncorrectNumber,
    InvalidCvc,
    InvalidExpiryMonth,
    InvalidExpiryYear,
    InvalidNumber,
    ValidationFailed,
)

MAX_HOLDER_NAME = 200
MAX_YEARS_AHEAD = 50


def normalize_number(raw: str) -> str:
    """Drop the spaces and dashes people type; anything else is left for validation to refuse."""
    return raw.replace(" ", "").replace("-", "")


def _is_digits(value: str) -> bool:
    # str.isdigit alone accepts superscripts and non-ASCII digits.
    return value.isascii() and value.isdigit()


def luhn_valid(number: str) -> bool:
    """The mod-10 check digit test; catches every single-digit typo."""
    if not _is_digits(number):
        return False
    total = 0
    for index, char in enumerate(reversed(number)):
        digit = ord(char) - 48
        if index % 2 == 1:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


def card_brand(number: str) -> str:
    """The network, from the leading digits (IIN ranges)."""
    if not _is_digits(number) or len(number) < 4:
        return "unknown"
    two, three, four = int(number[:2]), int(number[:3]), int(number[:4])
    if two in (34, 37):
        return "amex"
    if number[0] == "4":
        return "visa"
    if 51 <= two <= 55 or 2221 <= four <= 2720:
        return "mastercard"
    if four == 6011 or 644 <= three <= 649 or two == 65:
        return "discover"
    if 3528 <= four <= 3589:
        return "jcb"
    if 300 <= three <= 305 or three == 309 or two in (36, 38, 39):
        return "diners"
    if two in (62, 81):
        return "unionpay"
    return "unknown"


def card_funding(number: str) -> Funding:
    """What the BIN table says (domain/bins.py), never what a request declares: the processor's answer
    may correct it later."""
    return funding_of_number(number)


@dataclass(frozen=True, slots=True, repr=False)
class ValidatedCard:
    """A card that passed every synchronous check. Holds the PAN and CVC: never log its fields."""

    number: str
    exp_month: int
    exp_year: int
    cvc: str
    holder_name: str | None
    brand: str
    last4: str
    funding: Funding  # from the BIN table until the processor answers

    def __repr__(self) -> str:
        return f"ValidatedCard(brand={self.brand!r}, last4={self.last4!r})"

    def __str__(self) -> str:
        return f"{self.brand} ending in {self.last4}"


def validate_card(
    *,
    number: object,
    exp_month: object,
    exp_year: object,
    cvc: object,
    holder_name: object,
    today: date,
    param_prefix: str = "payment_method.card",
    require_cvc: bool = True,
) -> ValidatedCard:
    """Check a raw card from a request; raise the first problem found, naming its parameter. Without
    `require_cvc` (a card saved for later, which never keeps it), an absent CVC (None) is "" and a given one
    is still checked."""
    pan = _check_number(number, f"{param_prefix}.number")
    month = _check_exp_month(exp_month, f"{param_prefix}.exp_month")
    year = _check_exp_year(exp_year, f"{param_prefix}.exp_year", today)
    # Valid through the last day of the expiry month.
    if (year, month) < (today.year, today.month):
        # Like Stripe, blame the field that puts the date in the past.
        error, field = (InvalidExpiryYear, "exp_year") if year < today.year else (InvalidExpiryMonth, "exp_month")
        raise error(f"{param_prefix}.{field} is in the past: the card has expired.", param=f"{param_prefix}.{field}")
    brand = card_brand(pan)
    security_code = "" if cvc is None and not require_cvc else _check_cvc(cvc, brand, f"{param_prefix}.cvc")
    name = _check_holder_name(holder_name, f"{param_prefix}.holder_name")
    return ValidatedCard(
        number=pan,
        exp_month=month,
        exp_year=year,
        cvc=security_code,
        holder_name=name,
        brand=brand,
        last4=pan[-4:],
        funding=card_funding(pan),
    )


def _check_number(value: object, param: str) -> str:
    if not isinstance(value, str):
        raise InvalidNumber(f"{param} must be a string of digits.", param=param)
    pan = normalize_number(value)
    if not _is_digits(pan) or not 12 <= len(pan) <= 19:
        raise InvalidNumber(f"{param} is not a valid card number: it must have 12 to 19 digits.", param=param)
    if not luhn_valid(pan):
        raise IncorrectNumber(f"{param} is incorrect: its check digit does not match.", param=param)
    return pan


def _check_exp_month(value: object, param: str) -> int:
    # bool is an int subclass; `true` is not a month.
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 12:
        raise InvalidExpiryMonth(f"{param} must be an integer from 1 to 12.", param=param)
    return value


def _check_exp_year(value: object, param: str, today: date) -> int:
    latest = today.year + MAX_YEARS_AHEAD
    # Two-digit years are refused rather than guessed at.
    if isinstance(value, bool) or not isinstance(value, int) or not 1000 <= value <= latest:
        raise InvalidExpiryYear(f"{param} must be a 4-digit year no later than {latest}.", param=param)
    return value


def _check_cvc(value: object, brand: str, param: str) -> str:
    length = 4 if brand == "amex" else 3
    # Ints are refused: a leading zero is part of the code.
    if not isinstance(value, str) or not _is_digits(value) or len(value) != length:
        raise InvalidCvc(f"{param} must be a string of {length} digits for this card.", param=param)
    return value


def _check_holder_name(value: object, param: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationFailed(f"{param} must be a string.", param=param)
    name = value.strip()
    if len(name) > MAX_HOLDER_NAME:
        raise ValidationFailed(f"{param} must be at most {MAX_HOLDER_NAME} characters.", param=param)
    if not name.isprintable():
        raise ValidationFailed(f"{param} must not contain control characters.", param=param)
    return name or None
