"""The payment state machine and the checks on a payment's free-form fields."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType

from tender.domain.errors import InvalidTransition, ValidationFailed, is_shown_name


class PaymentStatus(StrEnum):
    PROCESSING = "processing"
    REQUIRES_ACTION = "requires_action"
    REQUIRES_CAPTURE = "requires_capture"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


FINAL_STATUSES: frozenset[PaymentStatus] = frozenset(
    {PaymentStatus.SUCCEEDED, PaymentStatus.FAILED, PaymentStatus.CANCELED}
)

_S = PaymentStatus
TRANSITIONS: Mapping[PaymentStatus, frozenset[PaymentStatus]] = MappingProxyType(
    {
        _S.PROCESSING: frozenset({_S.SUCCEEDED, _S.FAILED, _S.REQUIRES_ACTION, _S.REQUIRES_CAPTURE}),
        # Besides going back to processing, a 3-D Secure result may arrive with the final outcome.
        _S.REQUIRES_ACTION: frozenset({_S.PROCESSING, _S.CANCELED, _S.SUCCEEDED, _S.FAILED, _S.REQUIRES_CAPTURE}),
        _S.REQUIRES_CAPTURE: frozenset({_S.SUCCEEDED, _S.CANCELED}),
        _S.SUCCEEDED: frozenset(),
        _S.FAILED: frozenset(),
        _S.CANCELED: frozenset(),
    }
)


def can_transition(old: PaymentStatus, new: PaymentStatus) -> bool:
    return new in TRANSITIONS[old]


def ensure_transition(old: PaymentStatus, new: PaymentStatus) -> None:
    if not can_transition(old, new):
        raise InvalidTransition(f"A payment cannot move from {old.value} to {new.value}.")


# Stripe's metadata limits, which merchants already design around.
MAX_METADATA_KEYS = 50
MAX_METADATA_KEY_LENGTH = 40
MAX_METADATA_VALUE_LENGTH = 500
MAX_REFERENCE_LENGTH = 255
MAX_DESCRIPTION_LENGTH = 1000
MAX_CUSTOMER_LENGTH = 255
MAX_URL_LENGTH = 2048  # return_url, success_url, cancel_url


def validate_metadata(value: object, *, param: str = "metadata") -> dict[str, str]:
    """A flat object of string keys and string values; absent (None) means empty."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValidationFailed(f"{param} must be an object of string keys and string values.", param=param)
    if len(value) > MAX_METADATA_KEYS:
        raise ValidationFailed(f"{param} can have at most {MAX_METADATA_KEYS} keys.", param=param)
    clean: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not 1 <= len(key) <= MAX_METADATA_KEY_LENGTH:
            raise ValidationFailed(
                f"{param} keys must be strings of 1 to {MAX_METADATA_KEY_LENGTH} characters.", param=param
            )
        where = f"{param}.{key}" if is_shown_name(key) else param  # a key is quoted only if name-shaped
        if not isinstance(item, str):
            raise ValidationFailed(
                f"{where} must be a string (numbers, null and objects are not allowed).", param=where
            )
        if len(item) > MAX_METADATA_VALUE_LENGTH:
            raise ValidationFailed(f"{where} must be at most {MAX_METADATA_VALUE_LENGTH} characters.", param=where)
        clean[key] = item
    return clean


def validate_reference(value: object, *, param: str = "reference") -> str | None:
    """The merchant's own order reference (unique per merchant, checked by the store)."""
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_REFERENCE_LENGTH:
        raise ValidationFailed(f"{param} must be a string of 1 to {MAX_REFERENCE_LENGTH} characters.", param=param)
    if not value.isprintable():
        raise ValidationFailed(f"{param} must not contain control characters.", param=param)
    return value
