"""Checkout sessions through the API, and the hosted page's form as a browser without JavaScript posts it."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from tests.support.api import auth

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def session_body(ref: str, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "amount": 2500,
        "currency": "BRL",
        "reference": ref,
        "success_url": "https://shop.example/thanks?order=1",
        "cancel_url": "https://shop.example/cart",
        "description": "Order #1",
    }
    body.update(overrides)
    return body


async def new_session(api: Any, merchant: Any, reference: str = "order-1", **overrides: Any) -> dict[str, Any]:
    r = await api.post(
        "/v1/checkout/sessions", json=session_body(reference, **overrides), headers=auth(merchant.secret_key)
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def page_path(session: dict[str, Any]) -> str:
    return "/checkout/" + session["id"]


def card_form(number: str = "4242424242424242", expiry: str = "10/30", cvc: str = "123") -> str:
    return urlencode({"number": number, "expiry": expiry, "cvc": cvc, "holder_name": "Leia Organa"})


async def events_of(api: Any, merchant: Any, type_: str) -> list[dict[str, Any]]:
    r = await api.get("/v1/events", params={"type": type_}, headers=auth(merchant.secret_key))
    return list(r.json()["data"])
