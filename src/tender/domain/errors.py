"""Domain errors: they carry a machine-readable code and the offending parameter, never HTTP.

The API layer maps them to responses; messages are shown to merchants, so they must never
contain a card number or a CVC.
"""

from __future__ import annotations

import re

_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,64}", re.ASCII)
_CARD_LIKE_DIGITS = 12  # a name with this many digits could be a card number: never shown


def is_shown_name(name: str) -> bool:
    """Whether a name the client chose (a metadata key, an unknown parameter) may appear in `param` and
    messages: ASCII letters, digits and `_.-`, at most 64 characters, too few digits to be a card number.
    Values are never shown at all."""
    return _NAME.fullmatch(name) is not None and sum(c.isdigit() for c in name) < _CARD_LIKE_DIGITS


class DomainError(Exception):
    """Base of every rule violation the domain can report."""

    code: str = "domain_error"

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message: str = message
        self.param: str | None = param

    def __str__(self) -> str:
        return self.message


class ValidationFailed(DomainError):
    """Bad input from the caller; the API answers 400 and names `param`."""

    code = "parameter_invalid"


class CardInvalid(ValidationFailed):
    """A card that fails the synchronous checks (shape, Luhn, expiry, CVC): one subclass per code."""

    code = "invalid_card"


class InvalidNumber(CardInvalid):
    """The card number is not 12 to 19 digits."""

    code = "invalid_number"


class IncorrectNumber(CardInvalid):
    """The card number's check digit (Luhn) does not match."""

    code = "incorrect_number"


class InvalidExpiryMonth(CardInvalid):
    """The expiry month is not 1 to 12, or puts the date in the past."""

    code = "invalid_expiry_month"


class InvalidExpiryYear(CardInvalid):
    """The expiry year is not a 4-digit year in range, or is in the past."""

    code = "invalid_expiry_year"


class InvalidCvc(CardInvalid):
    """The CVC is not 3 digits (4 for American Express)."""

    code = "invalid_cvc"


class InvalidTransition(DomainError):
    """A payment status change the state machine does not allow."""

    code = "payment_unexpected_state"
