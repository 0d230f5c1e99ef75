"""Settlement against real PostgreSQL: payables captured through the real pipeline (PaymentPump + simulator),
settled per merchant, currency and day, never twice (sequentially or concurrently), the ledger following;
the ledger's own guards (append-only, balanced); and the `tender settle|balance|ledger verify` commands."""

from __future__ import annotations

import asyncio
import json
from collections import Counter, defaultdict
from datetime import date, timedelta
from typing import Any

import psycopg
import pytest

from tender.services.settlement import settle_all, settle_due
from tender.worker.pumps import SettlementPump
from tests.support.money import (
    CREDIT,
    DEBIT,
    assert_ledger_clean,
    capture,
    payables_of,
    plan_rule,
    query,
    set_fee_plan,
    settlements_of,
)
from tests.support.processes import tender

pytestmark = pytest.mark.integration

CURRENCIES = ("BRL", "JPY", "BHD")


# -- helpers (test_money_api.py uses them too) --------------------------------------------------------------


async def account_balance(container: Any, account_id: str) -> int:
    """As shown: merchant accounts are credit-normal, so minus the stored sum (0 for no account yet)."""
    rows = await query(container, "SELECT -balance AS shown FROM ledger_accounts WHERE id = %s", account_id)
    return int(rows[0]["shown"]) if rows else 0


async def events_of(container: Any, merchant_id: str, type_: str) -> list[dict[str, Any]]:
    return await query(
        container, "SELECT * FROM events WHERE merchant_id = %s AND type = %s ORDER BY id", merchant_id, type_
    )


async def assert_settled_exactly_once(container: Any, merchant_id: str) -> None:
    """Each settlement's amount and count are its payables', each payable paid once, one entry per settlement."""
    payables = await payables_of(container, merchant_id)
    by_settlement: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for p in payables:
        if p["settlement_id"]:
            by_settlement[p["settlement_id"]].append(p)
    settlements = await settlements_of(container, merchant_id)
    assert {s["id"] for s in settlements} == set(by_settlement)
    for s in settlements:
        mine = by_settlement[s["id"]]
        assert s["amount"] == sum(p["net"] for p in mine)
        assert s["payables"] == len(mine)
        assert {(p["currency"], p["payment_date"]) for p in mine} == {(s["currency"], s["date"])}
        assert all(p["status"] == "paid" and p["paid_at"] is not None for p in mine)
        entries = await query(container, "SELECT * FROM journal_entries WHERE source_id = %s", s["id"])
        assert sum(e["net"] for e in entries) == s["amount"]
    paid_events = Counter(e["object_id"] for e in await events_of(container, merchant_id, "payable.paid"))
    assert all(n == 1 for n in paid_events.values()), paid_events
    assert set(paid_events) == {p["id"] for p in payables if p["status"] == "paid"}
    created = Counter(e["object_id"] for e in await events_of(container, merchant_id, "settlement.created"))
    assert created == Counter({s["id"]: 1 for s in settlements})


def today_of(payables: list[dict[str, Any]]) -> date:
    """The capture date in the business time zone, read off a debit card's payable (due the same day)."""
    return next(p["payment_date"] for p in payables if p["funding"] == "debit")


# -- settling ----------------------------------------------------------------------------------------------


async def test_settle_makes_one_settlement_per_merchant_currency_and_day(api: Any, container: Any) -> None:
    from tender.services.merchants import create_merchant

    shop = await create_merchant(container.db, "Settle shop A")
    other = await create_merchant(container.db, "Settle shop B")
    await capture(
        api, container, shop,
        (CREDIT, 2500, "BRL"), (CREDIT, 1000, "BRL"), (CREDIT, 1234, "BRL"), (CREDIT, 777, "USD"), (DEBIT, 2500, "BRL"),
    )  # fmt: skip
    await capture(api, container, other, (CREDIT, 4000, "BRL"))
    payables = await payables_of(container, shop.merchant.id)
    assert len(payables) == 5
    today = today_of(payables)
    due = today + timedelta(days=30)
    credit = [p for p in payables if p["funding"] == "credit"]
    assert {(p["status"], p["payment_date"]) for p in credit} == {("waiting_funds", due)}
    assert sorted(p["fee"] for p in credit if p["currency"] == "BRL") == [50, 62, 125]  # 1234: 61.7 -> 62
    pending = f"merchant:{shop.merchant.id}:pending:BRL"
    available = f"merchant:{shop.merchant.id}:available:BRL"
    assert await account_balance(container, pending) == 2375 + 950 + 1172
    assert await account_balance(container, available) == 2425  # the debit card: paid at once

    # The day before: nothing of theirs is due.
    await settle_all(container.db, due - timedelta(days=1), max_groups=50)
    assert await settlements_of(container, shop.merchant.id) == []

    # Rounds of 1 group: every round settles one group, and the rounds go on until nothing is due.
    result = await settle_all(container.db, due, max_groups=1)
    mine = [g for g in result.settled if g.merchant_id in (shop.merchant.id, other.merchant.id)]
    assert len(mine) == 3
    settlements = await settlements_of(container, shop.merchant.id)
    assert sorted((s["currency"], s["date"], s["amount"], s["payables"]) for s in settlements) == [
        ("BRL", due, 2375 + 950 + 1172, 3),
        ("USD", due, 777 - 39, 1),  # 38.85 -> 39
    ]
    [theirs] = await settlements_of(container, other.merchant.id)
    assert (theirs["amount"], theirs["payables"]) == (3800, 1)
    debit = next(p for p in await payables_of(container, shop.merchant.id) if p["funding"] == "debit")
    assert debit["settlement_id"] is None  # paid at capture, never part of a settlement
    # The ledger moved the net from pending to available, in one entry per settlement.
    assert await account_balance(container, pending) == 0
    assert await account_balance(container, available) == 2425 + 2375 + 950 + 1172
    brl = next(s for s in settlements if s["currency"] == "BRL")
    [entry] = await query(container, "SELECT * FROM journal_entries WHERE source_id = %s", brl["id"])
    assert (entry["type"], entry["amount"], entry["fee"], entry["net"], entry["available_on"]) == (
        "settlement", 4497, 0, 4497, due
    )  # fmt: skip
    event = (await events_of(container, shop.merchant.id, "settlement.created"))[0]["data"]["object"]
    assert event["object"] == "settlement" and event["id"] in {s["id"] for s in settlements}
    await assert_settled_exactly_once(container, shop.merchant.id)
    await assert_settled_exactly_once(container, other.merchant.id)
    await assert_ledger_clean(container)


async def test_settling_twice_settles_nothing_twice(api: Any, container: Any, merchant: Any) -> None:
    await capture(api, container, merchant, (CREDIT, 2500, "BRL"), (CREDIT, 3000, "BRL"), (DEBIT, 100, "BRL"))
    due = today_of(await payables_of(container, merchant.merchant.id)) + timedelta(days=30)
    first = await settle_due(container.db, due, max_groups=1000)
    assert any(g.merchant_id == merchant.merchant.id and g.payables == 2 for g in first.settled)
    before = await settlements_of(container, merchant.merchant.id)
    again = await settle_due(container.db, due, max_groups=1000)
    assert not any(g.merchant_id == merchant.merchant.id for g in again.settled)
    assert await settlements_of(container, merchant.merchant.id) == before
    await assert_settled_exactly_once(container, merchant.merchant.id)
    await assert_ledger_clean(container)


async def test_concurrent_settlers_settle_each_payable_once(api: Any, container: Any, settings: Any) -> None:
    from tender.services.merchants import create_merchant

    shops = [await create_merchant(container.db, f"Race shop {i}") for i in range(3)]
    for shop in shops:
        # Debit cards due a day after credit cards: two days times three currencies = 6 groups per shop.
        await set_fee_plan(
            api, settings, shop.merchant.id,
            [plan_rule("3", 31, payment_method="card", funding="debit"), plan_rule("2.5", 30)],
        )  # fmt: skip
        await capture(
            api, container, shop,
            *[(number, amount, currency) for number in (CREDIT, DEBIT) for currency in ("BRL", "JPY", "BHD")
              for amount in (1010, 1030, 1050)],
        )  # fmt: skip
    payables = [p for shop in shops for p in await payables_of(container, shop.merchant.id)]
    assert len(payables) == 54
    assert all(p["status"] == "waiting_funds" for p in payables)
    as_of = max(p["payment_date"] for p in payables)
    rounds = await asyncio.gather(
        settle_due(container.db, as_of, max_groups=1000),
        settle_due(container.db, as_of, max_groups=1000),
        settle_all(container.db, as_of, max_groups=4),
        SettlementPump(container.db, tz=settings.business_tz).run_batch(1000),  # settles only today's: none
    )
    ids = {shop.merchant.id for shop in shops}
    groups = [g for r in rounds[:3] for g in r.settled if g.merchant_id in ids]
    assert sum(g.payables for g in groups) == 54  # together, each payable exactly once
    assert len({g.settlement.id for g in groups}) == 18
    for shop in shops:
        await assert_settled_exactly_once(container, shop.merchant.id)
        assert len(await settlements_of(container, shop.merchant.id)) == 6
    await assert_ledger_clean(container)


async def test_a_day_settled_again_grows_its_settlement_and_the_pump_settles_today(
    api: Any, container: Any, merchant: Any, settings: Any
) -> None:
    mid = merchant.merchant.id
    await set_fee_plan(api, settings, mid, [plan_rule("2", 0)])  # waiting funds, due the capture day
    pump = SettlementPump(container.db, tz=settings.business_tz)
    await capture(api, container, merchant, (CREDIT, 1000, "EUR"))
    assert await pump.run_batch(settings.settle_batch_groups) >= 1
    [first] = await settlements_of(container, mid)
    assert (first["amount"], first["payables"]) == (980, 1)
    await capture(api, container, merchant, (CREDIT, 2000, "EUR"))
    assert await pump.run_batch(settings.settle_batch_groups) >= 1
    [grown] = await settlements_of(container, mid)
    assert (grown["id"], grown["amount"], grown["payables"]) == (first["id"], 980 + 1960, 2)
    assert grown["updated"] > first["updated"]
    entries = await query(container, "SELECT net FROM journal_entries WHERE source_id = %s ORDER BY id", first["id"])
    assert [e["net"] for e in entries] == [980, 1960]
    assert await pump.run_batch(settings.settle_batch_groups) == 0  # idle
    await assert_settled_exactly_once(container, mid)  # one settlement.created, not two
    await assert_ledger_clean(container)


def test_the_worker_runs_a_settlement_pump(container: Any) -> None:
    from tender.worker.runner import Worker

    pumps = {p.name: p for p in Worker(container).pumps}
    settle = pumps["settlement"]
    # No trigger announces due payables: it polls, with no wake-up of its own to clear anyone else's.
    assert (settle.batch_size, settle.lanes, settle.wakes_on) == (container.settings.settle_batch_groups, 1, None)
    assert (pumps["payments"].wakes_on, pumps["refunds"].wakes_on) == ("payments", "refunds")


async def test_a_group_netting_to_zero_is_paid_without_a_ledger_entry(
    api: Any, container: Any, merchant: Any, settings: Any
) -> None:
    mid = merchant.merchant.id
    await set_fee_plan(api, settings, mid, [plan_rule("100", 0)])  # the whole amount is fee: net 0
    await capture(api, container, merchant, (CREDIT, 500, "BRL"))
    [payable] = await payables_of(container, mid)
    result = await settle_due(container.db, payable["payment_date"], max_groups=1000)
    [group] = [g for g in result.settled if g.merchant_id == mid]
    assert (group.payables, group.amount, group.settlement.amount) == (1, 0, 0)
    assert await query(container, "SELECT * FROM journal_entries WHERE source_id = %s", group.settlement.id) == []
    assert [p["status"] for p in await payables_of(container, mid)] == ["paid"]
    await assert_settled_exactly_once(container, mid)
    await assert_ledger_clean(container)


# -- the ledger's own guards -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE journal_entries SET amount = amount + 1 WHERE id = %(entry)s",
        "DELETE FROM journal_entries WHERE id = %(entry)s",
        "UPDATE journal_lines SET amount = amount + 1 WHERE entry_id = %(entry)s",
        "DELETE FROM journal_lines WHERE entry_id = %(entry)s",
        "TRUNCATE journal_lines, journal_entries",
    ],
)
async def test_the_journal_is_append_only(api: Any, container: Any, merchant: Any, statement: str) -> None:
    [payment_id] = await capture(api, container, merchant, (CREDIT, 2500, "BRL"))
    [entry] = await query(container, "SELECT id FROM journal_entries WHERE source_id = %s", payment_id)
    async with container.db.connection() as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            async with conn.transaction():
                await conn.execute(statement, {"entry": entry["id"]})
    lines = await query(container, "SELECT amount FROM journal_lines WHERE entry_id = %s", entry["id"])
    assert sorted(r["amount"] for r in lines) == [-2375, -125, 2500]


async def insert_unbalanced_entry(conn: Any, merchant_id: str) -> None:
    """An entry whose two lines are off by one, in one transaction."""
    pending, fees = f"merchant:{merchant_id}:pending:BRL", "platform:fees:BRL"
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO ledger_accounts (id, kind, owner, currency) VALUES"
            " (%s, 'merchant_pending', %s, 'BRL'), (%s, 'platform_fees', 'platform', 'BRL') ON CONFLICT DO NOTHING",
            (pending, merchant_id, fees),
        )
        await conn.execute(
            "INSERT INTO journal_entries (id, merchant_id, type, source_id, currency, amount, fee, net, available_on)"
            " VALUES ('txn_test_unbalanced', %s, 'payment', 'pay_x', 'BRL', 10, 0, 10, now())",
            (merchant_id,),
        )
        await conn.execute(
            "INSERT INTO journal_lines (entry_id, account_id, currency, amount)"
            " VALUES ('txn_test_unbalanced', %s, 'BRL', 10), ('txn_test_unbalanced', %s, 'BRL', -9)",
            (pending, fees),
        )


async def test_an_unbalanced_entry_is_refused(container: Any, merchant: Any) -> None:
    async with container.db.connection() as conn:
        with pytest.raises(psycopg.errors.CheckViolation, match="unbalanced journal entry"):
            await insert_unbalanced_entry(conn, merchant.merchant.id)
    assert await query(container, "SELECT 1 FROM journal_entries WHERE id = 'txn_test_unbalanced'") == []


# -- the commands, as separate processes -----------------------------------------------------------------


async def test_tender_settle_balance_and_ledger_verify(
    api: Any, container: Any, merchant: Any, tender_env: dict[str, str]
) -> None:
    mid = merchant.merchant.id
    await capture(
        api, container, merchant,
        (CREDIT, 2500, "BRL"), (CREDIT, 2500, "BRL"), (CREDIT, 1000, "JPY"), (CREDIT, 1000, "BHD"),
        (DEBIT, 2000, "BRL"),
    )  # fmt: skip
    due = today_of(await payables_of(container, mid)) + timedelta(days=30)  # in the future: --force below

    bad = await tender(tender_env, "settle", "--as-of", "2026-13-01")
    assert bad.returncode == 2
    assert "--as-of" in bad.stderr and "YYYY-MM-DD" in bad.stderr
    assert await settlements_of(container, mid) == []

    before = await tender(tender_env, "balance", mid)
    assert before.returncode == 0, before.stderr
    brl = next(line for line in before.stdout.splitlines() if "BRL" in line)
    assert "47.50 BRL" in brl and "19.40 BRL" in brl and "ok" in brl  # pending 2 x 23.75; available 20.00 - 3%

    settled = await tender(tender_env, "settle", "--as-of", due.isoformat(), "--force")
    assert settled.returncode == 0, settled.stderr
    rows = {c: line for line in settled.stdout.splitlines() if mid in line for c in CURRENCIES if f" {c} " in line}
    assert set(rows) == {"BRL", "JPY", "BHD"}
    assert "47.50 BRL" in rows["BRL"] and due.isoformat() in rows["BRL"]
    assert "950 JPY" in rows["JPY"]
    assert "0.950 BHD" in rows["BHD"]
    assert f"as of {due.isoformat()}" in settled.stdout
    await assert_settled_exactly_once(container, mid)
    again = await tender(tender_env, "settle", "--as-of", due.isoformat(), "--force")
    assert again.returncode == 0 and mid not in again.stdout
    assert len(await settlements_of(container, mid)) == 3

    after = await tender(tender_env, "balance", mid)
    assert after.returncode == 0, after.stderr
    brl = next(line for line in after.stdout.splitlines() if "BRL" in line)
    assert "0.00 BRL" in brl and "66.90 BRL" in brl and "MISMATCH" not in after.stdout
    unknown = await tender(tender_env, "balance", "mer_unknown")
    assert unknown.returncode == 1 and "No such merchant" in unknown.stderr

    clean = await tender(tender_env, "ledger", "verify")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "ledger balanced" in clean.stdout

    # Drift: an account's stored balance no longer equals its postings.
    account = f"merchant:{mid}:available:BRL"
    async with container.db.connection() as conn:
        await conn.execute("UPDATE ledger_accounts SET balance = balance + 1 WHERE id = %s", (account,))
    try:
        drift = await tender(tender_env, "ledger", "verify")
        assert drift.returncode == 1
        assert account in drift.stdout and "NOT balanced" in drift.stdout
        as_json = await tender(tender_env, "ledger", "verify", "--json")
        assert as_json.returncode == 1
        report = json.loads(as_json.stdout)
        assert report["balanced"] is False
        assert {"id": account, "stored": -6690 + 1, "postings": -6690} in report["drifted_accounts"]
        assert {"merchant_id": mid, "currency": "BRL", "status": "paid", "ledger": 6689, "payables": 6690} in report[
            "balance_mismatches"
        ]
        flagged = await tender(tender_env, "balance", mid)
        assert flagged.returncode == 1 and "MISMATCH" in flagged.stdout
    finally:
        async with container.db.connection() as conn:
            await conn.execute("UPDATE ledger_accounts SET balance = balance - 1 WHERE id = %s", (account,))
    assert (await tender(tender_env, "ledger", "verify")).returncode == 0
