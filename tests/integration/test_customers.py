"""Customers (issue 15): create, read, list by email with cursor pages, update (metadata merged like Stripe's,
the default payment method only one of its own), delete for good; 400s naming the field, nothing written."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tender.services import customers
from tests.support.api import auth
from tests.support.checkout import events_of

pytestmark = pytest.mark.integration

CARD = {"number": "4242424242424242", "exp_month": 10, "exp_year": 2030}


async def new_customer(api: Any, merchant: Any, **body: Any) -> dict[str, Any]:
    r = await api.post("/v1/customers", json=body, headers=auth(merchant.secret_key))
    assert r.status_code == 201, r.text
    return dict(r.json())


async def saved_card(api: Any, merchant: Any, **body: Any) -> dict[str, Any]:
    r = await api.post(
        "/v1/payment_methods", json={"type": "card", "card": CARD, **body}, headers=auth(merchant.secret_key)
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


async def count_customers(container: Any, merchant: Any) -> int:
    async with container.db.connection() as conn:
        cur = await conn.execute("SELECT count(*) AS n FROM customers WHERE merchant_id = %s", (merchant.merchant.id,))
        row = await cur.fetchone()
    return int(row["n"])


async def test_a_customer_is_created_read_and_announced(api: Any, merchant: Any) -> None:
    created = await new_customer(api, merchant, email="leia@example.com", name="Leia", metadata={"crm": "42"})
    assert created["id"].startswith("cus_") and created["object"] == "customer"
    assert (created["email"], created["name"], created["metadata"]) == ("leia@example.com", "Leia", {"crm": "42"})
    assert created["default_payment_method"] is None and created["test_clock"] is None and created["created"]
    got = await api.get(f"/v1/customers/{created['id']}", headers=auth(merchant.secret_key))
    assert got.status_code == 200 and got.json() == created
    events = await events_of(api, merchant, "customer.created")
    assert [e["data"]["object"]["id"] for e in events] == [created["id"]]


async def test_the_list_filters_by_email_and_pages_by_cursor(api: Any, merchant: Any) -> None:
    ids = [(await new_customer(api, merchant, email=f"c{i}@example.com"))["id"] for i in range(3)]
    twin = (await new_customer(api, merchant, email="c1@example.com"))["id"]
    headers = auth(merchant.secret_key)
    first = (await api.get("/v1/customers", params={"limit": 2}, headers=headers)).json()
    assert [c["id"] for c in first["data"]] == [twin, ids[2]] and first["has_more"] is True
    rest = (await api.get("/v1/customers", params={"limit": 2, "starting_after": ids[2]}, headers=headers)).json()
    assert [c["id"] for c in rest["data"]] == [ids[1], ids[0]] and rest["has_more"] is False
    by_email = (await api.get("/v1/customers", params={"email": "c1@example.com"}, headers=headers)).json()
    assert [c["id"] for c in by_email["data"]] == [twin, ids[1]]


async def test_an_update_changes_what_is_sent_and_merges_metadata(api: Any, merchant: Any) -> None:
    customer = await new_customer(api, merchant, email="a@example.com", name="A", metadata={"keep": "1", "drop": "2"})
    r = await api.post(
        f"/v1/customers/{customer['id']}",
        json={"name": "Anakin", "metadata": {"drop": "", "new": "3"}},
        headers=auth(merchant.secret_key),
    )
    assert r.status_code == 200, r.text
    updated = r.json()
    assert updated["email"] == "a@example.com" and updated["name"] == "Anakin"
    assert updated["metadata"] == {"keep": "1", "new": "3"}
    cleared = await api.post(f"/v1/customers/{customer['id']}", json={"email": ""}, headers=auth(merchant.secret_key))
    assert cleared.status_code == 200 and cleared.json()["email"] is None and cleared.json()["name"] == "Anakin"


async def test_the_default_payment_method_must_be_attached_to_the_customer(api: Any, merchant: Any) -> None:
    customer = await new_customer(api, merchant)
    loose = await saved_card(api, merchant)
    path = f"/v1/customers/{customer['id']}"
    for body, param in (
        ({"default_payment_method": loose["id"]}, "default_payment_method"),
        ({"invoice_settings": {"default_payment_method": loose["id"]}}, "invoice_settings.default_payment_method"),
    ):
        r = await api.post(path, json=body, headers=auth(merchant.secret_key))
        assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text
    mine = await saved_card(api, merchant, customer=customer["id"])
    r = await api.post(
        path, json={"invoice_settings": {"default_payment_method": mine["id"]}}, headers=auth(merchant.secret_key)
    )
    assert r.status_code == 200, r.text
    assert r.json()["default_payment_method"] == mine["id"]
    assert r.json()["invoice_settings"] == {"default_payment_method": mine["id"]}
    unset = await api.post(path, json={"default_payment_method": None}, headers=auth(merchant.secret_key))
    assert unset.json()["default_payment_method"] is None


async def test_created_with_a_payment_method_it_is_attached_and_the_default(api: Any, merchant: Any) -> None:
    card = await saved_card(api, merchant)
    customer = await new_customer(api, merchant, payment_method=card["id"])
    assert customer["default_payment_method"] == card["id"]
    got = await api.get(f"/v1/payment_methods/{card['id']}", headers=auth(merchant.secret_key))
    assert got.json()["customer"] == customer["id"]


async def test_a_deleted_customer_is_gone(api: Any, merchant: Any) -> None:
    customer = await new_customer(api, merchant, email="gone@example.com")
    path = f"/v1/customers/{customer['id']}"
    r = await api.delete(path, headers=auth(merchant.secret_key))
    assert r.status_code == 200 and r.json() == {"id": customer["id"], "object": "customer", "deleted": True}
    assert (await api.get(path, headers=auth(merchant.secret_key))).status_code == 404
    assert (await api.delete(path, headers=auth(merchant.secret_key))).status_code == 404
    listed = await api.get("/v1/customers", params={"email": "gone@example.com"}, headers=auth(merchant.secret_key))
    assert listed.json()["data"] == []
    r = await api.post(path, json={"name": "x"}, headers=auth(merchant.secret_key))
    assert r.status_code == 404


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"email": "not-an-address"}, "email"),
        ({"email": "a b@example.com"}, "email"),
        ({"email": "e" * 513}, "email"),
        ({"name": "n" * 257}, "name"),
        ({"metadata": {"k": 1}}, "metadata.k"),
        ({"metadata": {f"k{i}": "v" for i in range(51)}}, "metadata"),
        ({"test_clock": "clock_nope"}, "test_clock"),
        ({"payment_method": "pm_nope"}, "payment_method"),
        ({"invoice_settings": {"default_payment_method": "pm_nope"}}, "invoice_settings.default_payment_method"),
        ({"phone": "123"}, "phone"),
    ],
)
async def test_bad_input_is_a_400_naming_the_field_and_writes_nothing(
    api: Any, container: Any, merchant: Any, body: dict[str, Any], param: str
) -> None:
    r = await api.post("/v1/customers", json=body, headers=auth(merchant.secret_key))
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param
    assert await count_customers(container, merchant) == 0


async def test_another_merchants_customer_and_the_publishable_key(api: Any, merchant: Any, container: Any) -> None:
    from tender.services.merchants import create_merchant

    other = await create_merchant(container.db, f"Other {uuid.uuid4().hex[:6]}")
    customer = await new_customer(api, merchant)
    assert (await api.get(f"/v1/customers/{customer['id']}", headers=auth(other.secret_key))).status_code == 404
    r = await api.post("/v1/customers", json={}, headers=auth(merchant.publishable_key))
    assert r.status_code == 403 and r.json()["error"]["code"] == "secret_key_required"


async def test_a_customer_on_a_test_clock_lives_on_its_time(api: Any, container: Any, merchant: Any) -> None:
    clock = await api.post(
        "/v1/test_clocks", json={"frozen_time": "2027-01-31T12:00:00Z"}, headers=auth(merchant.secret_key)
    )
    customer = await new_customer(api, merchant, test_clock=clock.json()["id"])
    assert customer["test_clock"] == clock.json()["id"]
    plain = await new_customer(api, merchant)
    async with container.db.connection() as conn:
        on_clock = await customers.now_for_customer(conn, customer["id"])
        wall = await customers.now_for_customer(conn, plain["id"])
    assert on_clock.isoformat() == "2027-01-31T12:00:00+00:00"
    assert wall.year >= 2026 and wall != on_clock
