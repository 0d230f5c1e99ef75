"""Request builders for the API: the merchant's `Authorization` header and a card payment's body."""

from __future__ import annotations

from typing import Any


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def card_payment(number: str = "4242424242424242", **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "amount": 2500,
        "currency": "BRL",
        "payment_method": {
            "type": "card",
            "card": {"number": number, "exp_month": 10, "exp_year": 2030, "cvc": "123", "holder_name": "Luke"},
        },
    }
    body.update(overrides)
    return body
