"""Dunning on a test clock, with the real payment pump against the real simulator: a declined renewal makes the
subscription past_due and is retried 1, 3 and 5 days after the period's due time (or the merchant's days);
after the last failure the invoice is uncollectible and the subscription unpaid or canceled; a card changed
on the subscription is the one tried at the next retry, and recovers it. Every step is an event. Real
PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.subscriptions import (
    DECLINE,
    GOOD,
    ONCE,
    advance,
    call,
    clock,
    customer,
    event_types,
    invoices,
    payments_running,
    query,
    saved_card,
    subscribe,
    subscription,
)

pytestmark = pytest.mark.integration


async def attempts(container: Any, invoice_id: str) -> list[tuple[str, str, str | None]]:
    """The invoice's payments: (reference, status, decline code), oldest first."""
    rows = await query(
        container, "SELECT reference, status, decline_code FROM payments WHERE invoice_id = %s ORDER BY id", invoice_id
    )
    return [(r["reference"], r["status"], r["decline_code"]) for r in rows]


async def test_a_declined_renewal_is_retried_after_1_3_and_5_days_then_unpaid(
    api: Any, container: Any, merchant: Any
) -> None:
    clk = await clock(api, merchant, "2026-01-15T08:00:00Z")
    sub = await subscribe(api, merchant, await customer(api, merchant, ONCE, test_clock=clk))
    async with payments_running(container):
        await advance(api, merchant, clk, "2026-02-15T08:00:00Z")  # the renewal: declined
        first, renewal = await invoices(api, merchant, sub["id"])
        assert first["status"] == "paid"
        assert (renewal["status"], renewal["attempt_count"]) == ("open", 1)
        assert renewal["next_payment_attempt"] == "2026-02-16T08:00:00.000Z"
        assert (await subscription(api, merchant, sub["id"]))["status"] == "past_due"

        await advance(api, merchant, clk, "2026-02-16T07:59:59Z")  # not yet
        assert (await invoices(api, merchant, sub["id"]))[1]["attempt_count"] == 1
        await advance(api, merchant, clk, "2026-02-18T08:00:00Z")  # +1 day and +3 days
        renewal = (await invoices(api, merchant, sub["id"]))[1]
        assert (renewal["attempt_count"], renewal["next_payment_attempt"]) == (3, "2026-02-20T08:00:00.000Z")
        await advance(api, merchant, clk, "2026-02-20T08:00:00Z")  # +5 days: the last
    renewal = (await invoices(api, merchant, sub["id"]))[1]
    assert (renewal["status"], renewal["attempt_count"], renewal["next_payment_attempt"]) == ("uncollectible", 4, None)
    ended = await subscription(api, merchant, sub["id"])
    assert (ended["status"], ended["ended_at"]) == ("unpaid", None)
    tried = await attempts(container, renewal["id"])
    assert tried == [(f"inv:{renewal['id']}:{n}", "failed", "insufficient_funds") for n in (1, 2, 3, 4)]
    assert await event_types(api, merchant, renewal["id"]) == [
        "invoice.created",
        *["invoice.payment_failed"] * 4,
        "invoice.uncollectible",
    ]
    assert await event_types(api, merchant, sub["id"]) == [
        "subscription.created",
        "subscription.updated",  # renewed: the new period
        "subscription.past_due",
        "subscription.updated",  # unpaid
    ]
    [row] = await query(container, "SELECT next_run_at, clock_due_at FROM subscriptions WHERE id = %s", sub["id"])
    assert (row["next_run_at"], row["clock_due_at"]) == (None, None)  # unpaid: nothing more
    # Nothing more happens to it, however far the clock goes.
    async with payments_running(container):
        await advance(api, merchant, clk, "2026-06-01T00:00:00Z")
    assert len(await invoices(api, merchant, sub["id"])) == 2


async def test_the_merchant_may_cancel_on_final_failure_with_its_own_days(
    api: Any, container: Any, merchant: Any
) -> None:
    admin = {"Authorization": f"Bearer {container.settings.admin_key.get_secret_value()}"}
    r = await api.put(
        f"/admin/v1/merchants/{merchant.merchant.id}/billing_settings",
        json={"dunning_days": [2], "on_final_failure": "cancel"},
        headers=admin,
    )
    assert r.status_code == 200, r.text
    clk = await clock(api, merchant, "2026-03-01T00:00:00Z")
    sub = await subscribe(api, merchant, await customer(api, merchant, DECLINE, test_clock=clk))
    assert (sub["dunning_days"], sub["on_final_failure"]) == ([2], "cancel")
    async with payments_running(container):
        await advance(api, merchant, clk, "2026-03-01T00:00:00.001Z")  # the first charge has ended: declined
        assert (await subscription(api, merchant, sub["id"]))["status"] == "past_due"
        await advance(api, merchant, clk, "2026-03-03T00:00:00Z")
    [invoice] = await invoices(api, merchant, sub["id"])
    assert (invoice["status"], invoice["attempt_count"]) == ("uncollectible", 2)
    ended = await subscription(api, merchant, sub["id"])
    assert (ended["status"], ended["ended_at"]) == ("canceled", "2026-03-03T00:00:00.000Z")
    assert (await event_types(api, merchant, sub["id"]))[-1] == "subscription.canceled"


async def test_a_new_card_on_the_subscription_is_tried_at_the_next_retry_and_recovers_it(
    api: Any, container: Any, merchant: Any
) -> None:
    clk = await clock(api, merchant, "2026-04-30T12:00:00Z")
    cus = await customer(api, merchant, ONCE, test_clock=clk)
    sub = await subscribe(api, merchant, cus)
    async with payments_running(container):
        await advance(api, merchant, clk, "2026-05-30T12:00:00Z")  # Apr 30 + 1 month: the renewal, declined
        assert (await subscription(api, merchant, sub["id"]))["status"] == "past_due"
        new_card = await saved_card(api, merchant, GOOD, customer=cus)
        updated = await call(api, merchant, "POST", f"/v1/subscriptions/{sub['id']}", {"payment_method": new_card})
        assert (updated["payment_method"], updated["status"]) == (new_card, "past_due")  # no charge until the retry
        await advance(api, merchant, clk, "2026-05-31T12:00:00Z")
    renewal = (await invoices(api, merchant, sub["id"]))[1]
    assert (renewal["status"], renewal["attempt_count"], renewal["amount_paid"]) == ("paid", 2, 1000)
    [(_, first, _), (_, second, _)] = await attempts(container, renewal["id"])
    assert (first, second) == ("failed", "succeeded")
    [paid_with] = await query(container, "SELECT payment_method_id FROM payments WHERE id = %s", renewal["payment"])
    assert paid_with["payment_method_id"] == new_card
    recovered = await subscription(api, merchant, sub["id"])
    assert (recovered["status"], recovered["current_period_end"]) == ("active", "2026-06-30T12:00:00.000Z")
    assert (await event_types(api, merchant, sub["id"]))[-1] == "subscription.updated"  # active again
    assert (await event_types(api, merchant, renewal["id"]))[-1] == "invoice.paid"


async def test_without_a_usable_method_an_attempt_fails_at_once_and_dunning_goes_on(
    api: Any, container: Any, merchant: Any
) -> None:
    clk = await clock(api, merchant, "2026-07-01T00:00:00Z")
    cus = await customer(api, merchant, test_clock=clk)
    sub = await subscribe(api, merchant, cus)
    async with payments_running(container):
        await advance(api, merchant, clk, "2026-07-02T00:00:00Z")
        [pm] = (await call(api, merchant, "GET", f"/v1/customers/{cus}/payment_methods"))["data"]
        await call(api, merchant, "POST", f"/v1/payment_methods/{pm['id']}/detach", {})
        await advance(api, merchant, clk, "2026-08-01T00:00:00Z")  # the renewal: nothing to charge
    renewal = (await invoices(api, merchant, sub["id"]))[1]
    assert (renewal["status"], renewal["attempt_count"], renewal["payment"]) == ("open", 1, None)
    assert renewal["next_payment_attempt"] == "2026-08-02T00:00:00.000Z"
    assert (await subscription(api, merchant, sub["id"]))["status"] == "past_due"
    assert await attempts(container, renewal["id"]) == []  # nothing was sent to any processor
    assert (await event_types(api, merchant, renewal["id"]))[-1] == "invoice.payment_failed"


async def test_deleting_the_customer_cancels_its_subscriptions(api: Any, container: Any, merchant: Any) -> None:
    cus = await customer(api, merchant)
    sub = await subscribe(api, merchant, cus, trial_days=7)
    await call(api, merchant, "DELETE", f"/v1/customers/{cus}")
    ended = await subscription(api, merchant, sub["id"])
    assert (ended["status"], ended["ended_at"] is not None) == ("canceled", True)
    [row] = await query(container, "SELECT next_run_at FROM subscriptions WHERE id = %s", sub["id"])
    assert row["next_run_at"] is None
