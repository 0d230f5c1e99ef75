"""Parsing and validation of the simulator's JSON request bodies.

Error messages name the field and never quote its value: a value may be a card number or a CVC.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

import orjson

from tender.domain.errors import is_shown_name
from tender.simulator import apm

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
        body = orjson.loads(raw)  # as everywhere in Tender (the stdlib parser was 2 % of the simulator's CPU)
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
class CardInput:
    number: str
    exp_month: int
    exp_year: int
    cvc: str | None
    holder_name: str | None

    def __repr__(self) -> str:  # keep the card out of any log line or traceback
        return f"CardInput(last4={self.number[-4:]!r})"


@dataclass(frozen=True, slots=True)
class MethodInput:
    """An alternative payment method: its type and its one detail (`vpa`, `provider` or `bank`; may be None)."""

    type: str
    details: dict[str, str | None]


@dataclass(frozen=True, slots=True)
class AuthorizationInput:
    reference: str
    payment: str
    amount: int
    currency: str
    capture: bool
    card: CardInput | None  # exactly one of card and method
    method: MethodInput | None
    return_url: str | None

    def __repr__(self) -> str:
        return f"AuthorizationInput(reference={self.reference!r}, card={self.card!r}, method={self.method!r})"

    @property
    def method_type(self) -> str:
        return "card" if self.method is None else self.method.type

    def request_hash(self) -> str:
        """Identifies the request for idempotency checks without being a hash of the card number.

        A plain hash of a card number can be reversed by trying the numbers; so only the first six
        and last four digits (the truncation card rules allow to keep) take part, and never the CVC.
        """
        parts: dict[str, Any] = {
            "reference": self.reference,
            "payment": self.payment,
            "amount": self.amount,
            "currency": self.currency,
            "capture": self.capture,
            "return_url": self.return_url,
        }
        if self.card is not None:  # the same parts as before APMs existed, so old records still compare
            c = self.card
            parts["card"] = [c.number[:6], c.number[-4:], len(c.number), c.exp_month, c.exp_year]
            parts["holder_name"] = c.holder_name
        if self.method is not None:
            parts["method"] = {"type": self.method.type, **self.method.details}
        return _fingerprint(parts)


def _check_key(reference: str, idempotency_key: str | None) -> None:
    if idempotency_key is not None and idempotency_key != reference:
        raise BadRequest("The Idempotency-Key header must equal the reference.", "reference")


def _parse_card(card: Any) -> CardInput:
    if not isinstance(card, dict):
        raise BadRequest("card must be an object (or give method for an alternative payment method).", "card")
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
    return CardInput(number, exp_month, exp_year, cvc, holder_name)


def _parse_method(method: Any) -> MethodInput:
    """`{"type": T}` or `{"type": T, T: {<its one field>} | null}`, T one of apm.METHOD_TYPES."""
    if not isinstance(method, dict):
        raise BadRequest("method must be an object.", "method")
    kind = method.get("type")
    if kind not in apm.METHOD_TYPES:
        raise BadRequest("method.type must be one of " + ", ".join(apm.METHOD_TYPES) + ".", "method.type")
    for key in method:
        if key not in ("type", kind):
            where = f"method.{key}" if is_shown_name(key) else "method"  # a key is quoted only if name-shaped
            raise BadRequest(f"Unknown parameter: {where}.", where)
    field = apm.DETAIL_FIELDS[kind]
    sub = method.get(kind)
    if sub is None:
        sub = {}
    if not isinstance(sub, dict):
        raise BadRequest(f"method.{kind} must be an object.", f"method.{kind}")
    for key in sub:
        if key != field:
            where = f"method.{kind}.{key}" if is_shown_name(key) else f"method.{kind}"
            raise BadRequest(f"Unknown parameter: {where}.", where)
    param = f"method.{kind}.{field}"
    value = _text(sub, field, param, required=kind == "upi", max_len=255)
    if kind == "upi" and not apm.VPA.fullmatch(value or ""):
        raise BadRequest(f"{param} must be a UPI address of the form name@handle.", param)
    return MethodInput(kind, {field: value})


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
    card, method = None, None
    if body.get("method") is not None:
        if body.get("card") is not None:
            raise BadRequest("Give either card or method, not both.", "method")
        method = _parse_method(body["method"])
    else:
        card = _parse_card(body.get("card"))
    return_url = _text(body, "return_url", "return_url", required=False, max_len=2048)
    if return_url is not None and not return_url.startswith(("http://", "https://")):
        raise BadRequest("return_url must be an http(s) URL.", "return_url")
    if return_url is None and method is not None and method.type in apm.REDIRECT_TYPES:
        raise BadRequest(f"return_url is required for {method.type} payments.", "return_url")
    return AuthorizationInput(reference, payment, amount, currency, capture, card, method, return_url)


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
