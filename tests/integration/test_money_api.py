"""The money read API (/v1/payables, /v1/settlements, /v1/balance, /v1/balance_transactions) and the operator's
money endpoints (fee plans, ledger verify), over payments captured through the real pipeline."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest

from tender.services.merchants import create_merchant
from tender.services.settlement import settle_all
from tests.support.api import auth
from tests.support.money import CREDIT, DEBIT, admin, capture, plan_rule, set_fee_plan

pytestmark = pytest.mark.integration


async def get(api: Any, merchant: Any, path: str, **params: Any) -> Any:
    return await api.get(path, params=params, headers=auth(merchant.secret_key))


async def ok(api: Any, merchant: Any, path: str, **params: Any) -> dict[str, Any]:
    r = await get(api, merchant, path, **params)
    assert r.status_code == 200, r.text
    return dict(r.json())


def by_payment(payables: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {p["payment"]: p for p in payables}


async def test_payables_carry_the_default_plans_fees_and_dates(api: Any, container: Any, merchant: Any) -> None:
    credit, debit = await capture(api, container, merchant, (CREDIT, 2500, "BRL"), (DEBIT, 2500, "BRL"))
    payables = by_payment((await ok(api, merchant, "/v1/payables"))["data"])
    c, d = payables[credit], payables[debit]
    assert c["object"] == "payable" and c["id"].startswith("pyb_")
    assert (c["amount"], c["fee"], c["net"], c["currency"], c["status"]) == (2500, 125, 2375, "BRL", "waiting_funds")
    assert (d["amount"], d["fee"], d["net"], d["status"]) == (2500, 75, 2425, "paid")
    today = d["payment_date"]
    assert c["payment_date"] == (date.fromisoformat(today) + timedelta(days=30)).isoformat()
    assert d["paid_at"] is not None and c["paid_at"] is None and c["settlement"] is None
    # Filters.
    only = (await ok(api, merchant, "/v1/payables", payment=credit))["data"]
    assert [p["id"] for p in only] == [c["id"]]
    assert [p["id"] for p in (await ok(api, merchant, "/v1/payables", status="paid"))["data"]] == [d["id"]]
    assert (await ok(api, merchant, f"/v1/payables/{c['id']}"))["net"] == 2375


async def test_custom_plan_fees_round_half_up_in_every_currency(
    api: Any, container: Any, merchant: Any, settings: Any
) -> None:
    plan = await set_fee_plan(api, settings, merchant.merchant.id, [plan_rule("2.5", 30)])
    assert plan["default"] is False and plan["rules"][0]["percent"] == "2.5"
    cases = [
        (1010, "BRL", 25),  # 25.25
        (1030, "BRL", 26),  # 25.75
        (1050, "BRL", 26),  # 26.25
        (1020, "JPY", 26),  # 25.5 yen: half up
        (1010, "BHD", 25),  # 25.25 fils
        (1030, "BHD", 26),  # 25.75 fils
    ]
    ids = await capture(api, container, merchant, *[(CREDIT, amount, currency) for amount, currency, _ in cases])
    payables = by_payment((await ok(api, merchant, "/v1/payables", limit=100))["data"])
    for payment_id, (amount, currency, fee) in zip(ids, cases, strict=True):
        p = payables[payment_id]
        assert (p["amount"], p["currency"], p["fee"], p["net"]) == (amount, currency, fee, amount - fee)


async def test_lists_paginate_newest_first_and_refuse_bad_parameters(api: Any, container: Any, merchant: Any) -> None:
    await capture(api, container, merchant, *[(CREDIT, 1000 + i, "BRL") for i in range(3)])
    first = await ok(api, merchant, "/v1/payables", limit=2)
    assert first["object"] == "list" and first["has_more"] is True and len(first["data"]) == 2
    rest = await ok(api, merchant, "/v1/payables", limit=2, starting_after=first["data"][-1]["id"])
    assert rest["has_more"] is False and len(rest["data"]) == 1
    ids = [p["id"] for p in first["data"] + rest["data"]]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 3
    for path, params, param in [
        ("/v1/payables", {"status": "pending"}, "status"),
        ("/v1/payables", {"limit": 0}, "limit"),
        ("/v1/payables", {"limit": 101}, "limit"),
        ("/v1/settlements", {"limit": "ten"}, "limit"),
        ("/v1/balance_transactions", {"type": "payout"}, "type"),
    ]:
        r = await get(api, merchant, path, **params)
        assert r.status_code == 400, (path, params, r.text)
        assert r.json()["error"]["param"] == param


async def test_balance_settlements_and_balance_transactions_follow_the_money(
    api: Any, container: Any, merchant: Any
) -> None:
    credit_brl, _credit_usd, debit_brl = await capture(
        api, container, merchant, (CREDIT, 2500, "BRL"), (CREDIT, 1000, "USD"), (DEBIT, 1000, "BRL")
    )
    balance = await ok(api, merchant, "/v1/balance")
    assert balance == {
        "object": "balance",
        "waiting_funds": [{"currency": "BRL", "amount": 2375}, {"currency": "USD", "amount": 950}],
        "available": [{"currency": "BRL", "amount": 970}, {"currency": "USD", "amount": 0}],
    }
    txns = (await ok(api, merchant, "/v1/balance_transactions"))["data"]
    assert len(txns) == 3 and all(t["object"] == "balance_transaction" and t["type"] == "payment" for t in txns)
    t = next(t for t in txns if t["source"] == credit_brl)
    assert (t["amount"], t["fee"], t["net"], t["currency"], t["status"]) == (2500, 125, 2375, "BRL", "pending")
    t = next(t for t in txns if t["source"] == debit_brl)
    assert (t["amount"], t["fee"], t["net"], t["status"]) == (1000, 30, 970, "available")
    assert [x["source"] for x in (await ok(api, merchant, "/v1/balance_transactions", source=debit_brl))["data"]] == [
        debit_brl
    ]
    assert await ok(api, merchant, f"/v1/balance_transactions/{t['id']}") == t

    payables = (await ok(api, merchant, "/v1/payables", status="waiting_funds"))["data"]
    due = date.fromisoformat(payables[0]["payment_date"])
    await settle_all(container.db, due, max_groups=50)

    balance = await ok(api, merchant, "/v1/balance")
    assert balance["waiting_funds"] == [{"currency": "BRL", "amount": 0}, {"currency": "USD", "amount": 0}]
    assert balance["available"] == [{"currency": "BRL", "amount": 2375 + 970}, {"currency": "USD", "amount": 950}]
    settlements = (await ok(api, merchant, "/v1/settlements"))["data"]
    assert sorted((s["currency"], s["amount"], s["payables"], s["date"]) for s in settlements) == [
        ("BRL", 2375, 1, due.isoformat()),
        ("USD", 950, 1, due.isoformat()),
    ]
    s = settlements[0]
    assert s["object"] == "settlement" and s["id"].startswith("stl_") and "created" in s
    assert await ok(api, merchant, f"/v1/settlements/{s['id']}") == s
    paid = (await ok(api, merchant, "/v1/payables", status="paid"))["data"]
    assert {p["settlement"] for p in paid if p["payment"] != debit_brl} == {x["id"] for x in settlements}
    moves = (await ok(api, merchant, "/v1/balance_transactions", type="settlement"))["data"]
    assert sorted((m["source"], m["net"], m["available_on"]) for m in moves) == sorted(
        (x["id"], x["amount"], due.isoformat()) for x in settlements
    )
    assert all(m["status"] == "available" for m in moves)  # the ledger's word, even when settled ahead of the date
    settled = (await ok(api, merchant, "/v1/balance_transactions", source=credit_brl))["data"]
    assert [x["status"] for x in settled] == ["available"]  # moved by the settlement

    # Another merchant sees none of it.
    other = await create_merchant(container.db, "Money API other shop")
    assert (await get(api, other, f"/v1/settlements/{s['id']}")).status_code == 404
    assert (await get(api, other, f"/v1/payables/{paid[0]['id']}")).status_code == 404
    assert (await get(api, other, f"/v1/balance_transactions/{t['id']}")).status_code == 404
    assert (await ok(api, other, "/v1/settlements"))["data"] == []
    assert (await ok(api, other, "/v1/payables"))["data"] == []
    assert await ok(api, other, "/v1/balance") == {"object": "balance", "waiting_funds": [], "available": []}
    missing = await get(api, merchant, "/v1/settlements/stl_nope")
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found"


async def test_the_money_api_needs_a_secret_key(api: Any, merchant: Any) -> None:
    assert (await api.get("/v1/balance")).status_code == 401
    r = await api.get("/v1/balance", headers=auth(merchant.publishable_key))
    assert r.status_code == 403


# -- operator: fee plans, ledger verify ------------------------------------------------------------------


async def test_fee_plan_admin(api: Any, container: Any, merchant: Any, settings: Any) -> None:
    mid = merchant.merchant.id
    path = f"/admin/v1/merchants/{mid}/fee_plan"
    r = await api.get(path, headers=admin(settings))
    assert r.status_code == 200
    default = r.json()
    assert default["default"] is True and default["object"] == "fee_plan"
    assert {(x["payment_method"], x["funding"], x["percent"]) for x in default["rules"]} == {
        ("card", "credit", "5"),
        ("card", "debit", "3"),
        ("*", "*", "2"),
    }
    rules = [plan_rule("1.75", 1, fixed={"brl": 30}), plan_rule("2", 0, "paid", payment_method="card", funding="debit")]
    put = await set_fee_plan(api, settings, mid, rules)
    assert put["rules"][0]["fixed"] == {"BRL": 30}
    assert (await api.get(path, headers=admin(settings))).json() == put
    # The plan applies to the next capture: 1.75% of 1000 = 17.5 -> 18, + 30 fixed.
    [payment] = await capture(api, container, merchant, (CREDIT, 1000, "BRL"))
    [payable] = (await ok(api, merchant, "/v1/payables", payment=payment))["data"]
    assert (payable["fee"], payable["status"]) == (48, "waiting_funds")

    for body, param in [
        ({"rules": [plan_rule("abc", 1)]}, "rules[0].percent"),
        ({"rules": [plan_rule("101", 1)]}, "rules[0].percent"),
        ({"rules": [plan_rule("1", -1)]}, "rules[0].delay_days"),
        ({"rules": [plan_rule("1", 1, starts="later")]}, "rules[0].starts"),
        ({"rules": [plan_rule("1", 1, payment_method="card", funding="credit")]}, "rules"),  # no catch-all
        ({"rules": [plan_rule("1", 1), plan_rule("2", 1)]}, "rules"),  # the same rule twice
        ({"rules": []}, "rules"),
        ({}, "rules"),
        ({"rules": [plan_rule("1", 1)], "extra": 1}, "extra"),
        ({"rules": [plan_rule("1", 1, fixed={"XYZ": 1})]}, "fixed"),
    ]:
        r = await api.put(path, json=body, headers=admin(settings))
        assert r.status_code == 400, (body, r.text)
        assert r.json()["error"]["param"] == param, (body, r.json())
    r = await api.put(path, content=b"not json", headers=admin(settings))
    assert r.status_code == 400 and r.json()["error"]["param"] == "body"
    assert (await api.get(path, headers=admin(settings))).json() == put  # nothing bad was stored

    r = await api.delete(path, headers=admin(settings))
    assert r.status_code == 200 and r.json()["default"] is True
    assert (await api.get(path, headers=admin(settings))).json()["default"] is True

    unknown = "/admin/v1/merchants/mer_unknown/fee_plan"
    assert (await api.get(unknown, headers=admin(settings))).status_code == 404
    assert (await api.put(unknown, json={"rules": [plan_rule("1", 1)]}, headers=admin(settings))).status_code == 404
    assert (await api.delete(unknown, headers=admin(settings))).status_code == 404
    assert (await api.get(path, headers=auth(merchant.secret_key))).status_code == 401  # not the admin key


async def test_ledger_verify_endpoint(api: Any, container: Any, merchant: Any, settings: Any) -> None:
    await capture(api, container, merchant, (CREDIT, 2500, "BRL"))
    r = await api.get("/admin/v1/ledger/verify", headers=admin(settings))
    assert r.status_code == 200
    report = r.json()
    assert report["balanced"] is True, report
    assert report["entries"] >= 1 and report["lines"] >= 3 and report["accounts"] >= 3 and report["payables"] >= 1
    assert report["unbalanced_entries"] == report["drifted_accounts"] == report["balance_mismatches"] == []

    account = f"merchant:{merchant.merchant.id}:pending:BRL"
    async with container.db.connection() as conn:
        await conn.execute("UPDATE ledger_accounts SET balance = balance - 5 WHERE id = %s", (account,))
    try:
        r = await api.get("/admin/v1/ledger/verify", headers=admin(settings))
        assert r.status_code == 200  # a report, not an error
        assert r.json()["balanced"] is False
        assert [a["id"] for a in r.json()["drifted_accounts"]] == [account]
    finally:
        async with container.db.connection() as conn:
            await conn.execute("UPDATE ledger_accounts SET balance = balance + 5 WHERE id = %s", (account,))
    assert (await api.get("/admin/v1/ledger/verify", headers=admin(settings))).json()["balanced"] is True
