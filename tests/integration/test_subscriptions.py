"""Subscriptions over the API in process, with the real payment pump against the real simulator: create with
and without a trial, the checks (400 naming the field, nothing written), exactly one invoice per period under
concurrent renewal pumps, cancel now and at the period's end, an amount change from the next period, and the
payable of a payment on a test clock dated in the clock's time. Real PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import date
from typing import Any

import pytest

from tender.store import ledger as ledger_store
from tests.support.payments import authorizer, drain
from tests.support.subscriptions import (
    advance,
    call,
    clock,
    customer,
    event_types,
    invoices,
    payments_running,
    query,
    renewer,
    saved_card,
    subscribe,
    subscription,
)

pytestmark = pytest.mark.integration


async def assert_ledger_clean(container: Any) -> None:
    async with container.db.connection() as conn:
        assert await ledger_store.unbalanced_entries(conn) == []
        assert await ledger_store.drifted_accounts(conn) == []


async def test_without_trial_the_first_period_is_charged_at_once(api: Any, container: Any, merchant: Any) -> None:
    cus = await customer(api, merchant)
    sub = await subscribe(api, merchant, cus, amount=1990, reference="plan-basic-1")
    assert (sub["object"], sub["status"], sub["amount"], sub["interval"]) == ("subscription", "active", 1990, "month")
    assert sub["latest_invoice"] is not None and sub["trial_end"] is None
    [invoice] = await invoices(api, merchant, sub["id"])
    assert (invoice["status"], invoice["amount_due"], invoice["attempt_count"]) == ("open", 1990, 1)
    assert (invoice["period_start"], invoice["period_end"]) == (sub["current_period_start"], sub["current_period_end"])
    payment = await call(api, merchant, "GET", f"/v1/payments/{invoice['payment']}")
    assert (payment["status"], payment["amount"], payment["reference"]) == (
        "processing",
        1990,
        f"inv:{invoice['id']}:1",
    )

    await drain(authorizer(container))

    [invoice] = await invoices(api, merchant, sub["id"])
    assert (invoice["status"], invoice["amount_paid"]) == ("paid", 1990)
    sub = await subscription(api, merchant, sub["id"])
    assert sub["status"] == "active"
    [row] = await query(container, "SELECT next_run_at, current_period_end FROM subscriptions WHERE id = %s", sub["id"])
    assert row["next_run_at"] == row["current_period_end"]  # the next renewal is its next step
    assert await event_types(api, merchant, invoice["id"]) == ["invoice.created", "invoice.paid"]
    assert await event_types(api, merchant, sub["id"]) == ["subscription.created"]
    [payable] = await query(container, "SELECT amount FROM payables WHERE payment_id = %s", invoice["payment"])
    assert payable["amount"] == 1990
    await assert_ledger_clean(container)


async def test_a_trial_invoices_nothing_until_it_ends(api: Any, container: Any, merchant: Any) -> None:
    clk = await clock(api, merchant, "2026-01-10T12:00:00Z")
    cus = await customer(api, merchant, test_clock=clk)
    sub = await subscribe(api, merchant, cus, trial_days=14)
    assert (sub["status"], sub["latest_invoice"], sub["test_clock"]) == ("trialing", None, clk)
    assert (sub["current_period_start"], sub["trial_end"]) == ("2026-01-10T12:00:00.000Z", "2026-01-24T12:00:00.000Z")
    [row] = await query(container, "SELECT next_run_at, clock_due_at FROM subscriptions WHERE id = %s", sub["id"])
    assert row["next_run_at"] is None  # never the wall clock's pump's
    async with payments_running(container):
        await advance(api, merchant, clk, "2026-01-24T11:59:59Z")
        assert await invoices(api, merchant, sub["id"]) == []
        done = await advance(api, merchant, clk, "2026-01-24T12:00:00Z")
    assert done["status"] == "ready"
    sub = await subscription(api, merchant, sub["id"])
    assert sub["status"] == "active"
    assert (sub["current_period_start"], sub["current_period_end"]) == (
        "2026-01-24T12:00:00.000Z",
        "2026-02-24T12:00:00.000Z",
    )
    [invoice] = await invoices(api, merchant, sub["id"])
    assert (invoice["status"], invoice["period_start"]) == ("paid", "2026-01-24T12:00:00.000Z")
    # The payable of a payment on a clock is dated in the clock's time: a credit card's is 30 days on.
    [payable] = await query(container, "SELECT payment_date FROM payables WHERE payment_id = %s", invoice["payment"])
    assert payable["payment_date"] == date(2026, 2, 23)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"customer": "cus_nope"}, "customer"),
        ({"interval": "fortnight"}, "interval"),
        ({"amount": 0}, "amount"),
        ({"amount": 10.5}, "amount"),
        ({"currency": "XYZ"}, "currency"),
        ({"interval": "month", "interval_count": 13}, "interval_count"),
        ({"trial_days": -1}, "trial_days"),
        ({"payment_method": "pm_nope"}, "payment_method"),
        ({"on_final_failure": "explode"}, "on_final_failure"),
        ({"surprise": 1}, "surprise"),
    ],
)
async def test_bad_input_is_a_400_naming_the_field(
    api: Any, container: Any, merchant: Any, body: dict[str, Any], param: str
) -> None:
    cus = await customer(api, merchant)
    full = {"customer": cus, "amount": 1000, "currency": "BRL", "interval": "month", **body}
    error = (await call(api, merchant, "POST", "/v1/subscriptions", full, 400))["error"]
    assert error["param"] == param
    assert await query(container, "SELECT id FROM subscriptions WHERE customer_id = %s", cus) == []


async def test_a_customer_without_a_method_is_a_400_naming_payment_method(api: Any, merchant: Any) -> None:
    cus = await customer(api, merchant, number=None)
    body = {"customer": cus, "amount": 1000, "currency": "BRL", "interval": "month"}
    error = (await call(api, merchant, "POST", "/v1/subscriptions", body, 400))["error"]
    assert error["param"] == "payment_method"
    # Another customer's saved card is not this one's.
    other = await saved_card(api, merchant, customer=await customer(api, merchant, number=None))
    error = (await call(api, merchant, "POST", "/v1/subscriptions", {**body, "payment_method": other}, 400))["error"]
    assert error["param"] == "payment_method"


async def test_a_second_subscription_with_the_same_reference_is_a_409(api: Any, merchant: Any) -> None:
    cus = await customer(api, merchant)
    first = await subscribe(api, merchant, cus, reference="acct-42")
    body = {"customer": cus, "amount": 1000, "currency": "BRL", "interval": "month", "reference": "acct-42"}
    error = (await call(api, merchant, "POST", "/v1/subscriptions", body, 409))["error"]
    assert error["code"] == "duplicate_reference" and error["subscription"] == first["id"]


async def test_exactly_one_invoice_per_period_under_concurrent_renewal_pumps(
    api: Any, container: Any, merchant: Any
) -> None:
    subs = [(await subscribe(api, merchant, await customer(api, merchant), interval="day"))["id"] for _ in range(20)]
    await drain(authorizer(container))
    # Their periods are over: all due now, for four pumps at once, each claiming small batches, twice over.
    await query(
        container,
        "UPDATE subscriptions SET current_period_end = now() - interval '1 minute', next_run_at = now()"
        " WHERE id = ANY(%s) RETURNING id",
        subs,
    )
    pumps = [renewer(container) for _ in range(4)]
    for _ in range(2):
        await asyncio.gather(*(p.run_batch(3) for p in pumps for _ in range(3)))
    await drain(authorizer(container))
    rows = await query(
        container,
        "SELECT i.subscription_id, count(*) AS n, count(DISTINCT p.id) AS payments FROM invoices i"
        " LEFT JOIN payments p ON p.invoice_id = i.id WHERE i.subscription_id = ANY(%s)"
        " GROUP BY i.subscription_id, i.period_start",
        subs,
    )
    assert len(rows) == 40  # the first period and the renewed one of each
    assert all(r["n"] == 1 and r["payments"] == 1 for r in rows)
    for sub_id in subs[:3]:
        first, second = await invoices(api, merchant, sub_id)
        assert (first["status"], second["status"]) == ("paid", "paid")
        assert second["period_start"] < second["period_end"]
    await assert_ledger_clean(container)


async def test_cancel_now_and_at_period_end(api: Any, container: Any, merchant: Any) -> None:
    clk = await clock(api, merchant, "2026-03-31T09:00:00Z")
    now_sub = await subscribe(api, merchant, await customer(api, merchant, test_clock=clk))
    later = await subscribe(api, merchant, await customer(api, merchant, test_clock=clk))
    async with payments_running(container):
        await advance(api, merchant, clk, "2026-04-05T00:00:00Z")
        canceled = await call(api, merchant, "POST", f"/v1/subscriptions/{now_sub['id']}/cancel", {})
        assert (canceled["status"], canceled["ended_at"]) == ("canceled", "2026-04-05T00:00:00.000Z")
        pending = await call(api, merchant, "POST", f"/v1/subscriptions/{later['id']}/cancel", {"at_period_end": True})
        assert (pending["status"], pending["cancel_at_period_end"]) == ("active", True)
        await advance(api, merchant, clk, "2026-05-31T09:00:00Z")
    ended = await subscription(api, merchant, later["id"])
    # Mar 31 + 1 month is Apr 30: it ends there and is never invoiced again.
    assert (ended["status"], ended["ended_at"]) == ("canceled", "2026-04-30T09:00:00.000Z")
    assert len(await invoices(api, merchant, later["id"])) == 1
    assert len(await invoices(api, merchant, now_sub["id"])) == 1
    assert "subscription.canceled" in await event_types(api, merchant, later["id"])
    error = (await call(api, merchant, "POST", f"/v1/subscriptions/{now_sub['id']}/cancel", {}, 400))["error"]
    assert error["code"] == "subscription_unexpected_state"


async def test_an_amount_change_applies_from_the_next_period(api: Any, container: Any, merchant: Any) -> None:
    clk = await clock(api, merchant, "2026-01-31T10:00:00Z")
    sub = await subscribe(api, merchant, await customer(api, merchant, test_clock=clk), amount=1000)
    async with payments_running(container):
        await advance(api, merchant, clk, "2026-02-10T00:00:00Z")
        changed = await call(api, merchant, "POST", f"/v1/subscriptions/{sub['id']}", {"amount": 2500})
        assert (changed["amount"], changed["next_amount"]) == (1000, 2500)
        await advance(api, merchant, clk, "2026-03-31T10:00:00Z")
    got = await invoices(api, merchant, sub["id"])
    assert [(i["period_start"][:10], i["amount_due"], i["status"]) for i in got] == [
        ("2026-01-31", 1000, "paid"),
        ("2026-02-28", 2500, "paid"),
        ("2026-03-31", 2500, "paid"),
    ]
    sub = await subscription(api, merchant, sub["id"])
    assert (sub["amount"], sub["next_amount"]) == (2500, None)
