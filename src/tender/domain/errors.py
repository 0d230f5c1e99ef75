"""Domain errors: they carry a machine-readable code and the offending parameter, never HTTP.

The API layer maps them to responses; messages are shown to merchants, so they must never
contain a card number or a CVC.
"""

from __future__ import annotations


class DomainError(Exception):
    """Base of every rule violation the domain can report."""

    code: str = "domain_error"

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.message: str = message
        # An explicit code refines the class default (e.g. CardInvalid -> "invalid_cvc").
        self.code = code if code is not None else type(self).code
        self.param: str | None = param

    def __str__(self) -> str:
        return self.message


class ValidationFailed(DomainError):
    """Bad input from the caller; the API answers 400 and names `param`."""

    code = "parameter_invalid"


class CardInvalid(ValidationFailed):
    """A card that fails the synchronous checks (shape, Luhn, expiry, CVC)."""

    code = "invalid_card"


class InvalidTransition(DomainError):
    """A payment status change the state machine does not allow."""

    code = "payment_unexpected_state"
