"""Merchant-initiated payments with a saved card through the `stripe` processor, against real PostgreSQL and
localstripe (tests/support/localstripe.py): the first charge of a saved card makes a Stripe Customer and a
PaymentMethod attached to it, remembered in payment_methods.processor_refs with the registration (before the
confirm), and every later charge reuses them; the PaymentIntent is on that customer and method. The confirm's
`off_session` is Stripe's own API only (localstripe refuses it on a confirm): checked on the pure params."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tender.processors.base import AuthorizeRequest, CardData, SavedMethod
from tender.processors.stripe import StripeProcessor, confirm_params, saved_intent_params
from tender.worker.pumps import PaymentPump
from tests.support.api import auth
from tests.support.localstripe import KEY, intents_of
from tests.support.payments import authorizer, drain

pytestmark = pytest.mark.integration

DECLINED = "4000000000000341"  # localstripe: attaches, then declined when charged


def pump(c: Any) -> PaymentPump:
    return authorizer(c)


async def saved_card(sapi: httpx.AsyncClient, merchant: Any, number: str = "4242424242424242") -> tuple[str, str]:
    h = auth(merchant.secret_key)
    cus = (await sapi.post("/v1/customers", json={"name": "Jo"}, headers=h)).json()["id"]
    card = {"number": number, "exp_month": 12, "exp_year": 2031, "cvc": "123", "holder_name": "Jo"}
    r = await sapi.post("/v1/payment_methods", json={"type": "card", "card": card, "customer": cus}, headers=h)
    assert r.status_code == 201, r.text
    return cus, str(r.json()["id"])


async def charge(sapi: httpx.AsyncClient, c: Any, merchant: Any, cus: str, pm: str, amount: int) -> dict[str, Any]:
    body = {
        "amount": amount,
        "currency": "BRL",
        "payment_method": pm,
        "customer": cus,
        "off_session": True,
        "processor": "stripe",
    }
    r = await sapi.post("/v1/payments", json=body, headers=auth(merchant.secret_key))
    assert r.status_code == 202, r.text
    await drain(pump(c))
    got = await sapi.get(f"/v1/payments/{r.json()['id']}", headers=auth(merchant.secret_key))
    return dict(got.json())


async def refs_of(c: Any, pm: str) -> dict[str, Any]:
    async with c.db.connection() as conn:
        cur = await conn.execute("SELECT processor_refs FROM payment_methods WHERE id = %s", (pm,))
        row = await cur.fetchone()
    return dict(row["processor_refs"])


async def stripe_customers_of(url: str, pm: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=url, auth=(KEY, "")) as client:
        page = (await client.get("/v1/customers", params={"limit": 100})).json()
    return [c for c in page["data"] if (c.get("metadata") or {}).get("tender_payment_method") == pm]


async def test_a_saved_card_is_made_once_at_stripe_and_charged_off_session(
    sapi: httpx.AsyncClient, stripe_container: Any, merchant: Any, localstripe_url: str
) -> None:
    cus, pm = await saved_card(sapi, merchant)
    assert await refs_of(stripe_container, pm) == {}  # saving a card calls no processor

    first = await charge(sapi, stripe_container, merchant, cus, pm, 1500)
    assert first["status"] == "succeeded", (first["failure_code"], first["failure_message"])
    assert (first["processor"], first["off_session"], first["payment_method"]["id"]) == ("stripe", True, pm)
    refs = (await refs_of(stripe_container, pm))["stripe"]
    assert refs["customer"].startswith("cus_") and refs["payment_method"].startswith("pm_")
    [intent] = await intents_of(localstripe_url, first["id"])
    assert (intent["customer"], intent["payment_method"]) == (refs["customer"], refs["payment_method"])
    assert intent["status"] == "succeeded" and intent["latest_charge"]["amount"] == 1500

    second = await charge(sapi, stripe_container, merchant, cus, pm, 1700)
    assert second["status"] == "succeeded", second
    [again] = await intents_of(localstripe_url, second["id"])
    assert (again["customer"], again["payment_method"]) == (refs["customer"], refs["payment_method"])
    assert (await refs_of(stripe_container, pm))["stripe"] == refs  # remembered, not made again
    assert len(await stripe_customers_of(localstripe_url, pm)) == 1  # one Stripe customer for this saved card


async def test_a_saved_card_declined_at_stripe_fails_the_payment(
    sapi: httpx.AsyncClient, stripe_container: Any, merchant: Any, localstripe_url: str
) -> None:
    cus, pm = await saved_card(sapi, merchant, DECLINED)
    p = await charge(sapi, stripe_container, merchant, cus, pm, 900)
    assert p["status"] == "failed", p
    assert p["failure_code"] == "card_declined"
    [intent] = await intents_of(localstripe_url, p["id"])
    assert intent["status"] != "succeeded"


def test_the_confirm_says_off_session_to_stripe_but_not_to_an_emulator() -> None:
    card = CardData("4242424242424242", 12, 2031, None, "Jo")
    saved = SavedMethod("pm_tender", {"stripe": {"customer": "cus_S", "payment_method": "pm_S"}})
    mit = AuthorizeRequest("att_1", "pay_1", 100, "BRL", True, card=card, off_session=True, saved=saved)
    assert confirm_params(mit, emulator=False) == {"expand": ["payment_method"], "off_session": True}
    assert confirm_params(mit, emulator=True) == {"expand": ["payment_method"]}
    shopper = AuthorizeRequest("att_2", "pay_2", 100, "BRL", True, card=card, return_url="https://shop.example/b")
    assert confirm_params(shopper, emulator=False) == {
        "expand": ["payment_method"],
        "return_url": "https://shop.example/b",
    }
    params = saved_intent_params(mit, "cus_S", "pm_S", cards_only=True)
    assert (params["customer"], params["payment_method"], params["capture_method"]) == ("cus_S", "pm_S", "automatic")
    assert params["allowed_payment_method_types"] == ["card"]


async def test_saved_refs_stay_unwritten_when_the_registration_is_not(
    stripe_container: Any, localstripe_url: str
) -> None:
    """The processor answers the objects it made; only the services write them (with the registration)."""
    stripe = StripeProcessor(KEY, api_base=localstripe_url)
    try:
        card = CardData("4242424242424242", 12, 2031, None, "Jo")
        request = AuthorizeRequest(
            "att_refs", "pay_refs", 100, "BRL", True, card=card, off_session=True, saved=SavedMethod("pm_x", {})
        )
        made = await stripe.register(request)
        assert made.processor_reference and made.processor_reference.startswith("pi_")
        assert made.saved_refs is not None and set(made.saved_refs) == {"customer", "payment_method"}
        reused = await stripe.register(
            AuthorizeRequest(
                "att_refs2", "pay_refs", 100, "BRL", True, card=card, off_session=True,
                saved=SavedMethod("pm_x", {"stripe": made.saved_refs}),
            )
        )  # fmt: skip
        assert reused.saved_refs is None  # known refs: nothing made again
    finally:
        await stripe.aclose()
