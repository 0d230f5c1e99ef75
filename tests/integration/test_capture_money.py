"""A capture's money side: whichever path captures a payment (the worker's pump, a processor notification,
a manual capture), it earns exactly one payable and one balanced ledger entry, in the same transaction as
the status change. Real PostgreSQL and the real simulator."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from psycopg.types.json import Jsonb

from tender.services.merchants import create_merchant
from tender.store import ledger as ledger_store
from tests.support.money import assert_ledger_clean, entries_of, payment_payables
from tests.support.payments import (
    attempt_of,
    authorized,
    authorizer,
    drain,
    get,
    notification_for,
    pay,
    post,
    shopper_decides,
    three_ds_payment,
)

pytestmark = pytest.mark.integration


async def fresh_merchant(container: Any) -> Any:
    return await create_merchant(container.db, "Money shop")


async def test_an_automatic_capture_earns_one_payable_and_one_entry(api: Any, container: Any) -> None:
    merchant = await fresh_merchant(container)
    created = await pay(api, merchant, "4242424242424242", amount=2500, currency="BRL")
    await drain(authorizer(container))
    assert (await get(api, merchant, created["id"]))["status"] == "succeeded"

    [payable] = await payment_payables(container, created["id"])
    today = datetime.now(UTC).date()
    assert (payable["type"], payable["status"], payable["amount"], payable["fee"], payable["net"]) == (
        "payment", "waiting_funds", 2500, 125, 2375,
    )  # fmt: skip  # API.md's example: 2500 BRL on a credit card
    assert payable["payment_date"] == today + timedelta(days=30)
    assert (payable["payment_method"], payable["funding"]) == ("card", "credit")

    [entry] = await entries_of(container, created["id"])
    assert (entry["type"], entry["amount"], entry["fee"], entry["net"]) == ("payment", 2500, 125, 2375)
    assert entry["lines"] == {
        "processor:simulator:receivable:BRL": 2500,
        f"merchant:{merchant.merchant.id}:pending:BRL": -2375,
        "platform:fees:BRL": -125,
    }
    async with container.db.connection() as conn:
        balances = await ledger_store.merchant_balances(conn, merchant.merchant.id)
    assert {(b.kind, b.currency): b.amount for b in balances} == {("merchant_pending", "BRL"): 2375}
    await assert_ledger_clean(container)


async def test_a_debit_card_is_paid_at_once_at_three_percent(api: Any, container: Any) -> None:
    merchant = await fresh_merchant(container)
    created = await pay(api, merchant, "4000056655665556", amount=1050, currency="USD")
    await drain(authorizer(container))
    [payable] = await payment_payables(container, created["id"])
    # 3% of 1050 = 31.5 -> 32 (half up)
    assert (payable["status"], payable["fee"], payable["net"]) == ("paid", 32, 1018)
    assert payable["payment_date"] == datetime.now(UTC).date()
    assert payable["paid_at"] is not None
    [entry] = await entries_of(container, created["id"])
    assert entry["lines"][f"merchant:{merchant.merchant.id}:available:USD"] == -1018
    async with container.db.connection() as conn:
        cur = await conn.execute("SELECT type FROM events WHERE object_id = %s", (payable["id"],))
        assert [r["type"] for r in await cur.fetchall()] == ["payable.paid"]
    await assert_ledger_clean(container)


async def test_no_payable_for_a_decline_or_an_authorization_only(api: Any, container: Any) -> None:
    merchant = await fresh_merchant(container)
    declined = await pay(api, merchant, "4000000000000002")
    held = await pay(api, merchant, "4242424242424242", capture=False)
    await drain(authorizer(container))
    assert (await get(api, merchant, declined["id"]))["status"] == "failed"
    assert (await get(api, merchant, held["id"]))["status"] == "requires_capture"
    assert await payment_payables(container, declined["id"]) == []
    assert await payment_payables(container, held["id"]) == []


async def test_a_partial_capture_pays_the_fee_on_the_captured_amount(api: Any, container: Any) -> None:
    merchant = await fresh_merchant(container)
    p = await authorized(api, container, merchant)
    r = await post(api, merchant, f"/v1/payments/{p['id']}/capture", {"amount": 1010})
    assert r.status_code == 202
    await drain(authorizer(container))
    [payable] = await payment_payables(container, p["id"])
    assert (payable["amount"], payable["fee"], payable["net"]) == (1010, 51, 959)  # 5% of 1010 = 50.5 -> 51
    await assert_ledger_clean(container)


async def test_a_3ds_approval_by_notification_posts_once_however_often_it_is_told(
    api: Any, container: Any, simulator_url: str
) -> None:
    merchant = await fresh_merchant(container)
    p = await three_ds_payment(api, container, merchant)
    await shopper_decides(simulator_url, p, "approve")
    reference = (await attempt_of(container, p["id"]))["id"]
    body, headers = await notification_for(simulator_url, reference)
    assert (await api.post("/webhooks/simulator", content=body, headers=headers)).json()["outcome"] == "applied"
    assert (await get(api, merchant, p["id"]))["status"] == "succeeded"
    # The same news again under another event id, and the worker's own look-up: nothing more is posted.
    body2, headers2 = await notification_for(simulator_url, reference)
    assert (await api.post("/webhooks/simulator", content=body2, headers=headers2)).json()["outcome"] == "stale"
    await drain(authorizer(container))
    assert len(await payment_payables(container, p["id"])) == 1
    assert len(await entries_of(container, p["id"])) == 1
    await assert_ledger_clean(container)


async def test_a_capture_that_cannot_be_posted_does_not_happen(api: Any, container: Any) -> None:
    """Same transaction: if the money side fails (here a stored plan with no rule for credit cards, which the
    admin API would refuse), the status change rolls back with it and the payment is retried later."""
    merchant = await fresh_merchant(container)
    async with container.db.connection() as conn:
        rules = [{"payment_method": "card", "funding": "debit", "percent": "3", "delay_days": 0, "starts": "paid"}]
        await conn.execute(
            "INSERT INTO fee_plans (merchant_id, rules) VALUES (%s, %s)", (merchant.merchant.id, Jsonb(rules))
        )
    created = await pay(api, merchant, "4242424242424242")
    with pytest.raises(LookupError):
        await authorizer(container).run_batch(1000)
    assert (await get(api, merchant, created["id"]))["status"] == "processing"
    assert await payment_payables(container, created["id"]) == []
    assert await entries_of(container, created["id"]) == []
    # With a usable plan the next run captures it, once (the simulator replays the same authorization).
    async with container.db.connection() as conn:
        await conn.execute("DELETE FROM fee_plans WHERE merchant_id = %s", (merchant.merchant.id,))
        await conn.execute("UPDATE payments SET next_run_at = now() WHERE id = %s", (created["id"],))
    await drain(authorizer(container))
    assert (await get(api, merchant, created["id"]))["status"] == "succeeded"
    assert len(await payment_payables(container, created["id"])) == 1
    await assert_ledger_clean(container)


async def test_the_ledger_refuses_edits_and_unbalanced_lines(container: Any, api: Any) -> None:
    import psycopg

    merchant = await fresh_merchant(container)
    created = await pay(api, merchant)
    await drain(authorizer(container))
    [entry] = await entries_of(container, created["id"])
    for statement in (
        "UPDATE journal_entries SET amount = amount + 1 WHERE id = %s",
        "DELETE FROM journal_entries WHERE id = %s",
        "UPDATE journal_lines SET amount = amount WHERE entry_id = %s",
        "DELETE FROM journal_lines WHERE entry_id = %s",
    ):
        async with container.db.connection() as conn:
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                await conn.execute(statement, (entry["id"],))
    async with container.db.connection() as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            await conn.execute("TRUNCATE journal_lines")
        account = f"merchant:{merchant.merchant.id}:available:BRL"
        await conn.execute(
            "INSERT INTO ledger_accounts (id, kind, owner, currency) VALUES (%s, 'merchant_available', %s, 'BRL')"
            " ON CONFLICT DO NOTHING",
            (account, merchant.merchant.id),
        )
        with pytest.raises(psycopg.errors.CheckViolation, match="unbalanced"):
            await conn.execute(
                "INSERT INTO journal_lines (entry_id, account_id, currency, amount) VALUES (%s, %s, 'BRL', 1)",
                (entry["id"], account),
            )
    await assert_ledger_clean(container)
