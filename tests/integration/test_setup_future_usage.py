"""`setup_future_usage: "off_session"` on a card payment with a customer: once authorized, the card is saved to the
customer WITHOUT its CVC (in the status change's transaction), the payment names the saved method, and the saved
method then pays off-session. A declined payment saves nothing; the request's 400s name the field."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.api import auth, card_payment
from tests.support.payments import authorizer, drain, get

pytestmark = pytest.mark.integration


async def customer(api: Any, merchant: Any) -> str:
    r = await api.post("/v1/customers", json={"name": "Jo"}, headers=auth(merchant.secret_key))
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def methods_of(api: Any, merchant: Any, customer_id: str) -> list[dict[str, Any]]:
    r = await api.get(f"/v1/customers/{customer_id}/payment_methods", headers=auth(merchant.secret_key))
    assert r.status_code == 200, r.text
    return list(r.json()["data"])


async def create(api: Any, merchant: Any, body: dict[str, Any]) -> dict[str, Any]:
    r = await api.post("/v1/payments", json=body, headers=auth(merchant.secret_key))
    assert r.status_code == 202, r.text
    return dict(r.json())


async def test_an_authorized_payment_saves_its_card_without_cvc(api: Any, container: Any, merchant: Any) -> None:
    cus = await customer(api, merchant)
    accepted = await create(api, merchant, card_payment(customer=cus, setup_future_usage="off_session", capture=False))
    assert accepted["setup_future_usage"] == "off_session"
    assert "id" not in accepted["payment_method"]  # nothing saved before the card is authorized
    await drain(authorizer(container))

    p = await get(api, merchant, accepted["id"])
    assert p["status"] == "requires_capture"
    pm_id = p["payment_method"]["id"]
    assert pm_id.startswith("pm_")
    [saved] = await methods_of(api, merchant, cus)
    assert saved["id"] == pm_id
    assert saved["card"] == p["payment_method"]["card"]  # same brand, last4, expiry, fingerprint
    async with container.db.connection() as conn:
        cur = await conn.execute(
            "SELECT v.cvc_ct FROM payment_methods m JOIN vault_cards v ON v.id = m.card_id WHERE m.id = %s", (pm_id,)
        )
        row = await cur.fetchone()
        events = await conn.execute(
            "SELECT data FROM events WHERE object_id = %s AND type = 'payment.requires_capture'", (p["id"],)
        )
        [event] = await events.fetchall()
    assert row["cvc_ct"] is None  # a saved card never keeps its CVC
    assert event["data"]["object"]["payment_method"]["id"] == pm_id  # the event shows the saved method too

    # The saved card pays off-session, with no CVC.
    again = await create(
        api, merchant, {"amount": 700, "currency": "BRL", "payment_method": pm_id, "customer": cus, "off_session": True}
    )
    await drain(authorizer(container))
    assert (await get(api, merchant, again["id"]))["status"] == "succeeded"


async def test_a_declined_payment_saves_nothing(api: Any, container: Any, merchant: Any) -> None:
    cus = await customer(api, merchant)
    accepted = await create(
        api, merchant, card_payment("4000000000000002", customer=cus, setup_future_usage="off_session")
    )
    await drain(authorizer(container))
    p = await get(api, merchant, accepted["id"])
    assert p["status"] == "failed"
    assert "id" not in p["payment_method"]
    assert await methods_of(api, merchant, cus) == []


async def test_setup_future_usage_needs_a_customer_and_a_card(api: Any, container: Any, merchant: Any) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        (card_payment(setup_future_usage="off_session"), "customer"),
        (card_payment(setup_future_usage="off_session", customer="Jo Smith"), "customer"),
        (card_payment(setup_future_usage="off_session", customer="cus_" + "0" * 26), "customer"),
        (card_payment(setup_future_usage="on_session", customer=await customer(api, merchant)), "setup_future_usage"),
        (
            {
                "amount": 100,
                "currency": "BRL",
                "payment_method": {"type": "upi", "upi": {"vpa": "success@upi"}},
                "customer": await customer(api, merchant),
                "setup_future_usage": "off_session",
            },
            "setup_future_usage",
        ),
    ]
    for body, param in cases:
        r = await api.post("/v1/payments", json=body, headers=auth(merchant.secret_key))
        assert r.status_code == 400, (param, r.text)
        assert r.json()["error"]["param"] == param, r.text
        assert "4242424242424242" not in r.text
