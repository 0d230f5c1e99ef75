"""Parsing and validation of the simulator's JSON request bodies.

Error messages name the field and never quote its value: a value may be a card number or a CVC.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

MAX_BODY_BYTES = 64 * 1024
_CURRENCY = re.compile(r"[A-Z]{3}")
_DIGITS = re.compile(r"[0-9]+")


class BadRequest(ValueError):
    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


def json_object(raw: bytes) -> dict[str, Any]:
    if len(raw) > MAX_BODY_BYTES:
        raise BadRequest("The request body is too large.")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
    return body


def _text(obj: dict[str, Any], name: str, param: str, *, required: bool = True, max_len: int = 255) -> str | None:
    value = obj.get(name)
    if value is None:
        if required:
            raise BadRequest(f"Missing required parameter: {param}.", param)
        return None
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f"{param} must be a non-empty string.", param)
    if len(value) > max_len:
        raise BadRequest(f"{param} must be at most {max_len} characters.", param)
    return value


def _required_text(obj: dict[str, Any], name: str, param: str | None = None, max_len: int = 255) -> str:
    value = _text(obj, name, param or name, max_len=max_len)
    assert value is not None
    return value


def _int(obj: dict[str, Any], name: str, param: str, lo: int, hi: int, *, required: bool = True) -> int | None:
    value = obj.get(name)
    if value is None:
        if required:
            raise BadRequest(f"Missing required parameter: {param}.", param)
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadRequest(f"{param} must be an integer.", param)
    if not lo <= value <= hi:
        raise BadRequest(f"{param} must be between {lo} and {hi}.", param)
    return value


def _amount(obj: dict[str, Any], *, required: bool) -> int | None:
    # Integer minor units only; a float amount is refused, never rounded.
    return _int(obj, "amount", "amount", 1, 10**15, required=required)


def _fingerprint(parts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class AuthorizationInput:
    reference: str
    payment: str
    amount: int
    currency: str
    capture: bool
    number: str
    exp_month: int
    exp_year: int
    cvc: str | None
    holder_name: str | None
    return_url: str | None

    def __repr__(self) -> str:  # keep the card out of any log line or traceback
        return f"AuthorizationInput(reference={self.reference!r}, last4={self.number[-4:]!r})"

    def request_hash(self) -> str:
        """Identifies the request for idempotency checks without being a hash of the card number.

        A plain hash of a card number can be reversed by trying the numbers; so only the first six
        and last four digits (the truncation card rules allow to keep) take part, and never the CVC.
        """
        return _fingerprint(
            {
                "reference": self.reference,
                "payment": self.payment,
                "amount": self.amount,
                "currency": self.currency,
                "capture": self.capture,
                "card": [self.number[:6], self.number[-4:], len(self.number), self.exp_month, self.exp_year],
                "holder_name": self.holder_name,
                "return_url": self.return_url,
            }
        )


def _check_key(reference: str, idempotency_key: str | None) -> None:
    if idempotency_key is not None and idempotency_key != reference:
        raise BadRequest("The Idempotency-Key header must equal the reference.", "reference")


def parse_authorization(body: dict[str, Any], idempotency_key: str | None) -> AuthorizationInput:
    reference = _required_text(body, "reference")
    _check_key(reference, idempotency_key)
    payment = _required_text(body, "payment")
    amount = _amount(body, required=True)
    assert amount is not None
    currency = body.get("currency")
    if not isinstance(currency, str) or not _CURRENCY.fullmatch(currency):
        raise BadRequest("currency must be a three-letter upper-case ISO 4217 code.", "currency")
    capture = body.get("capture", True)
    if not isinstance(capture, bool):
        raise BadRequest("capture must be a boolean.", "capture")
    card = body.get("card")
    if not isinstance(card, dict):
        raise BadRequest("card must be an object.", "card")
    number = card.get("number")
    if not isinstance(number, str) or not _DIGITS.fullmatch(number) or not 12 <= len(number) <= 19:
        raise BadRequest("card.number must be a string of 12 to 19 digits.", "card.number")
    exp_month = _int(card, "exp_month", "card.exp_month", 1, 12)
    exp_year = _int(card, "exp_year", "card.exp_year", 0, 9999)
    assert exp_month is not None
    assert exp_year is not None
    if exp_year < 100:
        exp_year += 2000
    if exp_year < 2000:
        raise BadRequest("card.exp_year must be a four-digit year.", "card.exp_year")
    cvc = card.get("cvc")
    if cvc is not None and (not isinstance(cvc, str) or not _DIGITS.fullmatch(cvc) or not 3 <= len(cvc) <= 4):
        raise BadRequest("card.cvc must be a string of 3 or 4 digits.", "card.cvc")
    holder_name = _text(card, "holder_name", "card.holder_name", required=False, max_len=200)
    return_url = _text(body, "return_url", "return_url", required=False, max_len=2048)
    if return_url is not None and not return_url.startswith(("http://", "https://")):
        raise BadRequest("return_url must be an http(s) URL.", "return_url")
    return AuthorizationInput(
        reference, payment, amount, currency, capture, number, exp_month, exp_year, cvc, holder_name, return_url
    )


@dataclass(frozen=True, slots=True)
class OperationInput:
    kind: str  # capture | cancel | refund
    reference: str
    authorization: str  # the authorization's reference or sim id
    amount: int | None  # None: all that is left

    def request_hash(self) -> str:
        return _fingerprint({"kind": self.kind, "authorization": self.authorization, "amount": self.amount})


def parse_operation(
    kind: str, body: dict[str, Any], idempotency_key: str | None, authorization: str | None = None
) -> OperationInput:
    reference = _required_text(body, "reference")
    _check_key(reference, idempotency_key)
    if authorization is None:  # refunds name it in the body, captures and cancels in the path
        authorization = _required_text(body, "authorization")
    amount = None if kind == "cancel" else _amount(body, required=False)
    return OperationInput(kind, reference, authorization, amount)
