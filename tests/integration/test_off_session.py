"""Merchant-initiated payments with a saved card (`payment_method: "pm_..."`, `customer`, `off_session`) against real
PostgreSQL and the simulator in process: charged without a CVC, the card view from the saved method, the
request's 400s naming the field with nothing written, `services.payments.create_off_session` exactly once per
reference, and the simulator's succeeds-once card (4000000000001117)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tender.services import payments
from tender.simulator import SimulatorConfig
from tests.support.api import auth
from tests.support.payments import authorizer, drain, get, sim_records
from tests.support.simulator import BASE, open_sim, ref

pytestmark = pytest.mark.integration

SUCCEEDS_ONCE = "4000000000001117"


async def customer(api: Any, merchant: Any) -> str:
    r = await api.post("/v1/customers", json={"email": "jo@example.com"}, headers=auth(merchant.secret_key))
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def saved_card(
    api: Any, merchant: Any, customer_id: str | None, number: str = "4242424242424242", holder: str | None = None
) -> dict[str, Any]:
    card = {"number": number, "exp_month": 12, "exp_year": 2031, "cvc": "123", "holder_name": holder or "Jo"}
    body: dict[str, Any] = {"type": "card", "card": card}
    if customer_id is not None:
        body["customer"] = customer_id
    r = await api.post("/v1/payment_methods", json=body, headers=auth(merchant.secret_key))
    assert r.status_code == 201, r.text
    return dict(r.json())


def off_session(pm: str, customer_id: str | None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"amount": 1990, "currency": "BRL", "payment_method": pm, "off_session": True, **extra}
    if customer_id is not None:
        body["customer"] = customer_id
    return body


async def count_payments(container: Any, merchant_id: str) -> int:
    async with container.db.connection() as conn:
        cur = await conn.execute("SELECT count(*) AS n FROM payments WHERE merchant_id = %s", (merchant_id,))
        row = await cur.fetchone()
    return int(row["n"])


async def test_off_session_payment_charges_the_saved_card_without_cvc(
    api: Any, container: Any, merchant: Any, simulator_app: Any
) -> None:
    cus = await customer(api, merchant)
    pm = await saved_card(api, merchant, cus)
    r = await api.post("/v1/payments", json=off_session(pm["id"], cus), headers=auth(merchant.secret_key))
    assert r.status_code == 202, r.text
    accepted = r.json()
    assert accepted["payment_method"] == {"id": pm["id"], "type": "card", "card": pm["card"]}
    assert (accepted["customer"], accepted["off_session"], accepted["status"]) == (cus, True, "processing")

    await drain(authorizer(container))
    paid = await get(api, merchant, accepted["id"])
    assert paid["status"] == "succeeded", paid
    assert paid["amount_captured"] == 1990
    [record] = await sim_records(simulator_app, accepted["id"])  # exactly one charge at the simulator
    assert record["status"] == "approved"
    async with container.db.connection() as conn:
        cur = await conn.execute(
            "SELECT p.card_id, p.payment_method_id, v.cvc_ct FROM payments p JOIN vault_cards v ON v.id = p.card_id"
            " WHERE p.id = %s",
            (accepted["id"],),
        )
        row = await cur.fetchone()
    assert row["payment_method_id"] == pm["id"]
    assert row["cvc_ct"] is None  # the saved card's vault row: no CVC, and none was needed


async def test_a_saved_card_may_be_used_on_session_too(api: Any, container: Any, merchant: Any) -> None:
    cus = await customer(api, merchant)
    pm = await saved_card(api, merchant, cus)
    body = {"amount": 500, "currency": "BRL", "payment_method": pm["id"], "customer": cus}
    r = await api.post("/v1/payments", json=body, headers=auth(merchant.secret_key))
    assert r.status_code == 202, r.text
    await drain(authorizer(container))
    p = await get(api, merchant, r.json()["id"])
    assert (p["status"], p["off_session"], p["payment_method"]["id"]) == ("succeeded", False, pm["id"])


async def test_bad_saved_method_requests_are_400s_naming_the_field_and_write_nothing(
    api: Any, container: Any, merchant: Any
) -> None:
    from tender.services.merchants import create_merchant

    cus = await customer(api, merchant)
    other_cus = await customer(api, merchant)
    pm = await saved_card(api, merchant, cus)
    loose = await saved_card(api, merchant, None)  # saved, attached to nobody
    stranger = await create_merchant(container.db, f"Other {uuid.uuid4().hex[:6]}")
    stranger_cus = await customer(api, stranger)
    strangers_pm = await saved_card(api, stranger, stranger_cus)
    before = await count_payments(container, merchant.merchant.id)

    cases: list[tuple[dict[str, Any], str, str]] = [
        (off_session(pm["id"], None), "customer", "parameter_missing"),
        (off_session(pm["id"], other_cus), "customer", "invalid_request"),
        (off_session(pm["id"], "cus_doesnotexist"), "customer", "invalid_request"),
        (off_session(loose["id"], cus), "payment_method", "invalid_request"),
        (off_session(strangers_pm["id"], stranger_cus), "payment_method", "resource_missing"),
        (off_session("pm_" + "x" * 24, cus), "payment_method", "resource_missing"),
        (off_session(pm["id"], cus, amount=0), "amount", "invalid_request"),
        (
            {
                "amount": 100,
                "currency": "BRL",
                "off_session": True,
                "payment_method": {"type": "card", "card": {"number": "4242424242424242", "exp_month": 1,
                                                            "exp_year": 2031, "cvc": "123"}},
            },
            "off_session",
            "invalid_request",
        ),
        (off_session(pm["id"], cus, off_session="yes"), "off_session", "invalid_request"),
    ]  # fmt: skip
    for body, param, _code in cases:
        r = await api.post("/v1/payments", json=body, headers=auth(merchant.secret_key))
        assert r.status_code == 400, (param, r.text)
        error = r.json()["error"]
        assert error["param"] == param, (param, error)
        assert pm["id"] not in error["message"] and "4242424242424242" not in r.text
    assert await count_payments(container, merchant.merchant.id) == before


async def test_create_off_session_is_exactly_once_per_reference(api: Any, container: Any, merchant: Any) -> None:
    """S2's renewals call it in their own transaction; a re-run after a crash finds the same payment."""
    cus = await customer(api, merchant)
    pm = await saved_card(api, merchant, cus)
    reference = f"inv:in_test{uuid.uuid4().hex[:8]}:1"

    async def charge() -> Any:
        async with container.db.transaction() as conn:
            return await payments.create_off_session(
                conn,
                merchant_id=merchant.merchant.id,
                customer_id=cus,
                payment_method_id=pm["id"],
                amount=4900,
                currency="BRL",
                reference=reference,
                metadata={"plan": "gold"},
                invoice_id=None,
                description="Gold plan",
                processor="simulator",
            )

    first = await charge()
    again = await charge()
    assert again.id == first.id
    assert (first.off_session, first.payment_method_id, first.status) == (True, pm["id"], "processing")
    assert await count_payments(container, merchant.merchant.id) == 1
    await drain(authorizer(container))
    p = await get(api, merchant, first.id)
    assert (p["status"], p["reference"], p["metadata"], p["description"]) == (
        "succeeded",
        reference,
        {"plan": "gold"},
        "Gold plan",
    )


async def test_succeeds_once_card_pays_once_then_declines(api: Any, container: Any, merchant: Any) -> None:
    cus = await customer(api, merchant)
    pm = await saved_card(api, merchant, cus, SUCCEEDS_ONCE, holder=f"Once {uuid.uuid4().hex[:8]}")
    ids = []
    for _ in range(3):
        r = await api.post("/v1/payments", json=off_session(pm["id"], cus), headers=auth(merchant.secret_key))
        assert r.status_code == 202, r.text
        ids.append(r.json()["id"])
        await drain(authorizer(container))
    outcomes = [await get(api, merchant, i) for i in ids]
    assert [(p["status"], p["decline_code"]) for p in outcomes] == [
        ("succeeded", None),
        ("failed", "insufficient_funds"),
        ("failed", "insufficient_funds"),
    ]
    assert outcomes[1]["failure_code"] == "card_declined"


async def test_simulator_succeeds_once_card_is_per_card_and_replays_answer_the_same(tmp_path: Any) -> None:
    sim, client = await open_sim(SimulatorConfig(db_path=str(tmp_path / "sim.db"), public_url=BASE, seed=3))
    try:

        def body(holder: str) -> dict[str, Any]:
            card = {"number": SUCCEEDS_ONCE, "exp_month": 10, "exp_year": 2030, "holder_name": holder}
            return {"reference": ref(), "payment": "pay_x", "amount": 100, "currency": "BRL", "card": card}

        first = body("A")
        answers = [(await sim.authorize(b)).json() for b in (first, first, body("A"), body("B"))]
        assert [a["status"] for a in answers] == ["approved", "approved", "declined", "approved"]
        assert (answers[2]["failure_code"], answers[2]["decline_code"]) == ("card_declined", "insufficient_funds")
    finally:
        await client.aclose()
        await sim.app.state.simulator.aclose()
