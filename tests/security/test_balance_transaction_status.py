"""Finding 16c: "a balance transaction says `available` while the ledger still holds it pending"."""

from __future__ import annotations

from typing import Any

import pytest

from tender.services.settlement import settle_all
from tests.support.api import auth
from tests.support.money import assert_ledger_clean, capture, payables_of, plan_rule, set_fee_plan
from tests.support.refunds import drain_refunds, pump, refund

pytestmark = pytest.mark.integration

CREDIT = "4242424242424242"


async def transactions(api: Any, merchant: Any) -> dict[str, dict[str, Any]]:
    """The balance transactions keyed by source id (each one's own GET agreeing with the list)."""
    r = await api.get("/v1/balance_transactions", params={"limit": 100}, headers=auth(merchant.secret_key))
    assert r.status_code == 200, r.text
    listed = {t["source"]: t for t in r.json()["data"]}
    for t in listed.values():
        one = await api.get(f"/v1/balance_transactions/{t['id']}", headers=auth(merchant.secret_key))
        assert one.json() == t
    return listed


async def balance(api: Any, merchant: Any) -> dict[str, int]:
    b = (await api.get("/v1/balance", headers=auth(merchant.secret_key))).json()
    return {"pending": b["waiting_funds"][0]["amount"], "available": b["available"][0]["amount"]}


async def test_money_due_today_stays_pending_until_the_settlement_moves_it(
    api: Any, container: Any, settings: Any, merchant: Any
) -> None:
    # Due the day it is captured, but waiting for the settlement: pending in the ledger until it runs.
    await set_fee_plan(api, settings, merchant.merchant.id, [plan_rule("2", 0, "waiting_funds")])
    [payment] = await capture(api, container, merchant, (CREDIT, 10000, "BRL"))
    [payable] = await payables_of(container, merchant.merchant.id)
    r = await refund(api, merchant, {"payment": payment, "amount": 1000})
    assert r.status_code == 202, r.text
    refund_id = r.json()["id"]
    await drain_refunds(pump(container))

    txns = await transactions(api, merchant)
    assert txns[payment]["available_on"] == payable["payment_date"].isoformat()  # its date has come: today
    assert await balance(api, merchant) == {"pending": 9800 - 1000, "available": 0}
    assert (txns[payment]["status"], txns[refund_id]["status"]) == ("pending", "pending")  # as the ledger holds it

    await settle_all(container.db, payable["payment_date"], max_groups=10)
    txns = await transactions(api, merchant)
    assert await balance(api, merchant) == {"pending": 0, "available": 8800}
    assert (txns[payment]["status"], txns[refund_id]["status"]) == ("available", "available")
    [settlement] = [t for t in txns.values() if t["type"] == "settlement"]
    assert (settlement["net"], settlement["status"]) == (8800, "available")
    await assert_ledger_clean(container)


async def test_money_paid_at_once_is_available_at_once(api: Any, container: Any, settings: Any, merchant: Any) -> None:
    await set_fee_plan(api, settings, merchant.merchant.id, [plan_rule("2", 0, "paid")])
    [payment] = await capture(api, container, merchant, (CREDIT, 10000, "BRL"))
    assert (await transactions(api, merchant))[payment]["status"] == "available"
    assert await balance(api, merchant) == {"pending": 0, "available": 9800}


async def test_money_due_later_is_pending(api: Any, container: Any, merchant: Any) -> None:
    [payment] = await capture(api, container, merchant, (CREDIT, 10000, "BRL"))  # default plan: 30 days
    assert (await transactions(api, merchant))[payment]["status"] == "pending"
