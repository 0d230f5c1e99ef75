"""A one-off card's number leaves the vault once its payment is final (migration 0019): nothing reads it after
that, so keeping it would only widen what a stolen database and vault key expose. A saved card keeps its number
for the charges to come, and so does a card whose payment is not final yet (a capture to come)."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from tender.store import migrate
from tests.support.api import auth
from tests.support.databases import fresh_database
from tests.support.payments import authorizer, drain, get, pay, post
from tests.support.subscriptions import customer as customer_with_card

pytestmark = pytest.mark.integration

DECLINED = "4000000000000002"


async def vault_of(container: Any, payment_id: str) -> dict[str, Any]:
    """The payment's vault row: whether it still holds a number and a CVC."""
    async with container.db.connection() as conn:
        cur = await conn.execute(
            "SELECT v.number_ct IS NOT NULL AS number, v.cvc_ct IS NOT NULL AS cvc"
            " FROM payments p JOIN vault_cards v ON v.id = p.card_id WHERE p.id = %s",
            (payment_id,),
        )
        row = await cur.fetchone()
    assert row is not None, f"{payment_id} has no vault card"
    return dict(row)


async def test_a_one_off_cards_number_is_erased_when_its_payment_ends(api: Any, container: Any, merchant: Any) -> None:
    paid = await pay(api, merchant)
    declined = await pay(api, merchant, DECLINED)
    assert await vault_of(container, paid["id"]) == {"number": True, "cvc": True}  # before the processor's turn
    await drain(authorizer(container))
    assert (await get(api, merchant, paid["id"]))["status"] == "succeeded"
    assert (await get(api, merchant, declined["id"]))["status"] == "failed"
    assert await vault_of(container, paid["id"]) == {"number": False, "cvc": False}
    assert await vault_of(container, declined["id"]) == {"number": False, "cvc": False}


async def test_an_authorized_card_keeps_its_number_until_the_capture_ends_it(
    api: Any, container: Any, merchant: Any
) -> None:
    held = await pay(api, merchant, capture=False)
    await drain(authorizer(container))
    assert (await get(api, merchant, held["id"]))["status"] == "requires_capture"
    assert await vault_of(container, held["id"]) == {"number": True, "cvc": False}  # the CVC went at authorization
    assert (await post(api, merchant, f"/v1/payments/{held['id']}/capture")).status_code == 202
    await drain(authorizer(container))
    assert (await get(api, merchant, held["id"]))["status"] == "succeeded"
    assert await vault_of(container, held["id"]) == {"number": False, "cvc": False}


async def test_a_saved_card_keeps_its_number_and_charges_again(api: Any, container: Any, merchant: Any) -> None:
    customer = await customer_with_card(api, merchant)
    pm = (await api.get(f"/v1/customers/{customer}", headers=auth(merchant.secret_key))).json()[
        "default_payment_method"
    ]
    body = {"amount": 1200, "currency": "BRL", "customer": customer, "payment_method": pm}
    for _ in range(2):  # the second charge needs the number the first one's end left in the vault
        r = await api.post("/v1/payments", json=body, headers=auth(merchant.secret_key))
        assert r.status_code == 202, r.text
        await drain(authorizer(container))
        assert (await get(api, merchant, r.json()["id"]))["status"] == "succeeded"
        assert (await vault_of(container, r.json()["id"]))["number"]


async def test_a_card_saved_by_its_payment_keeps_its_number(api: Any, container: Any, merchant: Any) -> None:
    r = await api.post("/v1/customers", json={}, headers=auth(merchant.secret_key))
    customer = r.json()["id"]
    paid = await pay(api, merchant, customer=customer, setup_future_usage="off_session")
    await drain(authorizer(container))
    assert (await get(api, merchant, paid["id"]))["status"] == "succeeded"
    saved = await api.get(f"/v1/customers/{customer}/payment_methods", headers=auth(merchant.secret_key))
    assert [m["card"]["last4"] for m in saved.json()["data"]] == ["4242"], saved.text
    assert (await vault_of(container, paid["id"]))["number"]  # saved in the same transaction as its end


def test_migration_0019_erases_the_numbers_of_payments_that_had_ended(pg_server_url: str) -> None:
    card = "INSERT INTO vault_cards (id, merchant_id, number_ct, cvc_ct, fingerprint, brand, last4, exp_month,"
    card += " exp_year, funding) VALUES (%s, 'mer_old', '\\x01', '\\x02', 'f', 'visa', '4242', 10, 2030, 'credit')"
    payment = "INSERT INTO payments (id, merchant_id, amount, currency, status, capture, payment_method, processor,"
    payment += " created, updated, card_id, payment_method_id, next_run_at)"
    payment += " VALUES (%s, 'mer_old', 100, 'BRL', %s, true, '{}', 'simulator', now(), now(), %s, %s, %s)"
    with fresh_database(pg_server_url, "tender_mig", revision="0018") as url:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("INSERT INTO merchants (id, name) VALUES ('mer_old', 'Old')")
            for card_id in ("card_done", "card_open", "card_saved"):
                conn.execute(card, (card_id,))
            conn.execute(
                "INSERT INTO payment_methods (id, merchant_id, card_id, brand, last4, exp_month, exp_year, funding,"
                " fingerprint, created, updated) VALUES ('pm_old', 'mer_old', 'card_saved', 'visa', '4242', 10, 2030,"
                " 'credit', 'f', now(), now())"
            )
            conn.execute(payment, ("pay_done", "succeeded", "card_done", None, None))
            conn.execute(payment, ("pay_open", "processing", "card_open", None, "now()"))
            conn.execute(payment, ("pay_saved", "failed", "card_saved", "pm_old", None))
        migrate.upgrade(url, "0019")
        with psycopg.connect(url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT id, number_ct IS NOT NULL, cvc_ct IS NOT NULL FROM vault_cards ORDER BY id"
            ).fetchall()
    assert rows == [("card_done", False, False), ("card_open", True, True), ("card_saved", True, True)]
