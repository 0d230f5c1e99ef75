"""Saved payment methods (issue 15): a card saved without its CVC (checked if given, never stored), the number only
as vault ciphertext, the same card the same fingerprint within a merchant; a publishable key may save one but not
read, attach or use it; attach, detach and a customer's list; a card payment's card saved for its customer.

(Named test_saved_payment_methods.py: tests/unit/test_payment_methods.py exists, and two test modules of one
basename collide in pytest's default import mode.)"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tender.services import payment_methods
from tender.store import payments as payment_store
from tests.support.api import auth
from tests.support.checkout import events_of
from tests.support.payments import authorizer, drain, pay

pytestmark = pytest.mark.integration

PAN = "4242424242424242"
CVC = "739"


def card(number: str = PAN, **fields: Any) -> dict[str, Any]:
    return {"type": "card", "card": {"number": number, "exp_month": 10, "exp_year": 2030, **fields}}


async def create(api: Any, key: str, body: dict[str, Any]) -> Any:
    return await api.post("/v1/payment_methods", json=body, headers=auth(key))


async def new_customer(api: Any, merchant: Any) -> str:
    r = await api.post("/v1/customers", json={}, headers=auth(merchant.secret_key))
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def vault_row(container: Any, pm_id: str) -> dict[str, Any]:
    async with container.db.connection() as conn:
        cur = await conn.execute(
            "SELECT v.* FROM payment_methods m JOIN vault_cards v ON v.id = m.card_id WHERE m.id = %s", (pm_id,)
        )
        row = await cur.fetchone()
    assert row is not None
    return dict(row)


async def test_a_saved_card_shows_its_public_view_only(api: Any, merchant: Any) -> None:
    r = await create(api, merchant.secret_key, card(cvc=CVC, holder_name="Leia"))
    assert r.status_code == 201, r.text
    pm = r.json()
    assert pm["id"].startswith("pm_") and pm["object"] == "payment_method" and pm["type"] == "card"
    assert pm["card"]["brand"] == "visa" and pm["card"]["last4"] == "4242"
    assert (pm["card"]["exp_month"], pm["card"]["exp_year"]) == (10, 2030)
    assert pm["card"]["funding"] and pm["card"]["fingerprint"] and pm["customer"] is None
    assert PAN not in r.text and "cvc" not in r.text
    got = await api.get(f"/v1/payment_methods/{pm['id']}", headers=auth(merchant.secret_key))
    assert got.status_code == 200 and got.json() == pm


async def test_the_number_is_only_ciphertext_and_the_cvc_is_nowhere(api: Any, container: Any, merchant: Any) -> None:
    key = f"pm-{uuid.uuid4().hex[:8]}"
    r = await api.post(
        "/v1/payment_methods",
        json=card(cvc=CVC),
        headers={**auth(merchant.publishable_key), "Idempotency-Key": key},
    )
    assert r.status_code == 201, r.text
    row = await vault_row(container, r.json()["id"])
    assert row["cvc_ct"] is None and row["last4"] == "4242"
    assert container.vault.decrypt(bytes(row["number_ct"]), row_id=row["id"]) == PAN
    async with container.db.connection() as conn:
        cur = await conn.execute(
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
        )
        tables = [t["table_name"] for t in await cur.fetchall()]
        for table in tables:
            cur = await conn.execute(f'SELECT t::text AS row FROM "{table}" t')  # names from the catalog
            for found in await cur.fetchall():
                assert PAN not in found["row"], f"{table} holds the card number"
        # The stored idempotent answer and request fingerprint hold neither.
        cur = await conn.execute(
            "SELECT request_hash, response_body FROM idempotency_keys WHERE merchant_id = %s AND key = %s",
            (merchant.merchant.id, key),
        )
        stored = await cur.fetchone()
    assert stored is not None
    body = bytes(stored["response_body"])
    assert PAN.encode() not in body and b'"cvc"' not in body


async def test_the_same_card_twice_has_the_same_fingerprint_within_a_merchant_only(
    api: Any, container: Any, merchant: Any
) -> None:
    from tender.services.merchants import create_merchant

    a = (await create(api, merchant.secret_key, card(cvc="123"))).json()
    b = (await create(api, merchant.publishable_key, card(number="4242 4242 4242 4242"))).json()
    other_card = (await create(api, merchant.secret_key, card(number="5555555555554444"))).json()
    assert a["id"] != b["id"] and a["card"]["fingerprint"] == b["card"]["fingerprint"]
    assert other_card["card"]["fingerprint"] != a["card"]["fingerprint"]
    other = await create_merchant(container.db, f"Other {uuid.uuid4().hex[:6]}")
    theirs = (await create(api, other.secret_key, card())).json()
    assert theirs["card"]["fingerprint"] != a["card"]["fingerprint"]


async def test_a_publishable_key_saves_but_cannot_read_attach_or_use(api: Any, merchant: Any) -> None:
    customer = await new_customer(api, merchant)
    pk = merchant.publishable_key
    pm = (await create(api, pk, card())).json()
    for r in (
        await api.get(f"/v1/payment_methods/{pm['id']}", headers=auth(pk)),
        await api.post(f"/v1/payment_methods/{pm['id']}/attach", json={"customer": customer}, headers=auth(pk)),
        await api.post(f"/v1/payment_methods/{pm['id']}/detach", json={}, headers=auth(pk)),
        await api.get(f"/v1/customers/{customer}/payment_methods", headers=auth(pk)),
        await create(api, pk, {**card(), "customer": customer}),
    ):
        assert r.status_code == 403 and r.json()["error"]["code"] == "secret_key_required", r.text
    listed = await api.get(f"/v1/customers/{customer}/payment_methods", headers=auth(merchant.secret_key))
    assert listed.json()["data"] == []


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (card(number="4242424242424241"), "card.number"),
        (card(number="42"), "card.number"),
        (card(cvc="12"), "card.cvc"),
        (card(exp_month=13), "card.exp_month"),
        ({"type": "card", "card": {"number": PAN, "exp_month": 1, "exp_year": 2020}}, "card.exp_year"),
        ({"type": "upi", "card": card()["card"]}, "type"),
        ({"type": "card"}, "card"),
        ({**card(), "customer": "cus_nope"}, "customer"),
        ({**card(), "funding": "credit"}, "funding"),
    ],
)
async def test_bad_input_is_a_400_naming_the_field_and_writes_nothing(
    api: Any, container: Any, merchant: Any, body: dict[str, Any], param: str
) -> None:
    r = await create(api, merchant.secret_key, body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param
    assert PAN not in r.text
    async with container.db.connection() as conn:
        cur = await conn.execute(
            "SELECT (SELECT count(*) FROM payment_methods WHERE merchant_id = %(m)s)"
            " + (SELECT count(*) FROM vault_cards WHERE merchant_id = %(m)s) AS n",
            {"m": merchant.merchant.id},
        )
        assert (await cur.fetchone())["n"] == 0


async def test_attach_detach_and_the_customers_list(api: Any, merchant: Any) -> None:
    headers = auth(merchant.secret_key)
    alice, bob = await new_customer(api, merchant), await new_customer(api, merchant)
    first = (await create(api, merchant.secret_key, {**card(), "customer": alice})).json()
    assert first["customer"] == alice
    second = (await create(api, merchant.secret_key, card(number="5555555555554444"))).json()
    r = await api.post(f"/v1/payment_methods/{second['id']}/attach", json={"customer": alice}, headers=headers)
    assert r.status_code == 200 and r.json()["customer"] == alice
    again = await api.post(f"/v1/payment_methods/{second['id']}/attach", json={"customer": alice}, headers=headers)
    assert again.status_code == 200
    attached = await events_of(api, merchant, "payment_method.attached")
    assert sorted(e["data"]["object"]["id"] for e in attached) == sorted([first["id"], second["id"]])
    listed = (await api.get(f"/v1/customers/{alice}/payment_methods", headers=headers)).json()
    assert [m["id"] for m in listed["data"]] == [second["id"], first["id"]]

    taken = await api.post(f"/v1/payment_methods/{second['id']}/attach", json={"customer": bob}, headers=headers)
    assert taken.status_code == 400 and taken.json()["error"]["code"] == "payment_method_unexpected_state"
    missing = await api.post(f"/v1/payment_methods/{second['id']}/attach", json={"customer": "cus_x"}, headers=headers)
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "customer"

    await api.post(f"/v1/customers/{alice}", json={"default_payment_method": second["id"]}, headers=headers)
    r = await api.post(f"/v1/payment_methods/{second['id']}/detach", headers=headers)
    assert r.status_code == 200 and r.json()["customer"] is None
    alice_now = (await api.get(f"/v1/customers/{alice}", headers=headers)).json()
    assert alice_now["default_payment_method"] is None
    listed = (await api.get(f"/v1/customers/{alice}/payment_methods", headers=headers)).json()
    assert [m["id"] for m in listed["data"]] == [first["id"]]
    moved = await api.post(f"/v1/payment_methods/{second['id']}/attach", json={"customer": bob}, headers=headers)
    assert moved.status_code == 200 and moved.json()["customer"] == bob
    assert (await api.get("/v1/payment_methods/pm_nope", headers=headers)).status_code == 404
    assert (await api.get("/v1/customers/cus_nope/payment_methods", headers=headers)).status_code == 404


async def test_a_card_payments_card_is_saved_once_without_its_cvc(api: Any, container: Any, merchant: Any) -> None:
    customer = await new_customer(api, merchant)
    paid = await pay(api, merchant, PAN, capture=False)  # authorized, not final: its number is still in the vault
    await drain(authorizer(container))
    async with container.db.transaction() as conn:
        payment = await payment_store.get_payment(conn, merchant.merchant.id, paid["id"])
        assert payment is not None and payment.status == "requires_capture"
        pm_id = await payment_methods.save_card_from_payment(conn, payment, customer)
        assert await payment_methods.save_card_from_payment(conn, payment, customer) == pm_id
    pm = (await api.get(f"/v1/payment_methods/{pm_id}", headers=auth(merchant.secret_key))).json()
    assert pm["customer"] == customer and pm["card"]["last4"] == "4242"
    assert pm["card"]["fingerprint"] == paid["payment_method"]["card"]["fingerprint"]
    assert (await vault_row(container, pm_id))["cvc_ct"] is None
