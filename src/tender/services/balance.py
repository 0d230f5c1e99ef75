"""The merchant's money, read: payables, settlements, the balance and its balance transactions.

The balance is the ledger's (the merchant's pending and available accounts); the payables' sums by status
always equal it, which `tender ledger verify` and `tender balance` prove.
"""

from __future__ import annotations

from typing import Any

from tender.errors import InvalidRequest, NotFound
from tender.services.objects import iso
from tender.services.payables import PAYABLE_COLUMNS, payable_object
from tender.services.settlement import SETTLEMENT_COLUMNS, settlement_object
from tender.store import ledger as ledger_store
from tender.store import merchants as merchant_store
from tender.store.db import Database, newest_first

PAYABLE_STATUSES = ("waiting_funds", "paid")
TRANSACTION_TYPES = ("payment", "refund", "settlement")
ENTRY_COLUMNS = "id, merchant_id, type, source_id, currency, amount, fee, net, available_on, created"


def _one_of(value: str | None, allowed: tuple[str, ...], param: str) -> None:
    if value is not None and value not in allowed:
        raise InvalidRequest(f"{param}: must be one of " + ", ".join(allowed), param=param)


# -- payables --------------------------------------------------------------------------------------------


async def list_payables(
    db: Database,
    merchant_id: str,
    *,
    limit: int = 10,
    starting_after: str | None = None,
    status: str | None = None,
    payment: str | None = None,
) -> tuple[list[dict[str, Any]], bool]:
    _one_of(status, PAYABLE_STATUSES, "status")
    async with db.connection() as conn:
        rows, more = await newest_first(
            conn,
            "payables",
            PAYABLE_COLUMNS,
            limit=limit,
            starting_after=starting_after,
            equal={"merchant_id": merchant_id, "status": status, "payment_id": payment},
        )
    return [payable_object(r) for r in rows], more


async def get_payable(db: Database, merchant_id: str, payable_id: str) -> dict[str, Any]:
    async with db.connection() as conn:
        cur = await conn.execute(
            f"SELECT {PAYABLE_COLUMNS} FROM payables WHERE id = %s AND merchant_id = %s", (payable_id, merchant_id)
        )
        row = await cur.fetchone()
    if row is None:
        raise NotFound("No such payable.", param="id")
    return payable_object(row)


# -- settlements -----------------------------------------------------------------------------------------


async def list_settlements(
    db: Database, merchant_id: str, *, limit: int = 10, starting_after: str | None = None
) -> tuple[list[dict[str, Any]], bool]:
    async with db.connection() as conn:
        rows, more = await newest_first(
            conn, "settlements", SETTLEMENT_COLUMNS, limit=limit, starting_after=starting_after,
            equal={"merchant_id": merchant_id},
        )  # fmt: skip
    return [settlement_object(r) for r in rows], more


async def get_settlement(db: Database, merchant_id: str, settlement_id: str) -> dict[str, Any]:
    async with db.connection() as conn:
        cur = await conn.execute(
            f"SELECT {SETTLEMENT_COLUMNS} FROM settlements WHERE id = %s AND merchant_id = %s",
            (settlement_id, merchant_id),
        )
        row = await cur.fetchone()
    if row is None:  # another merchant's settlement is as missing as one that does not exist
        raise NotFound("No such settlement.", param="id")
    return settlement_object(row)


# -- balance ---------------------------------------------------------------------------------------------


async def balance(db: Database, merchant_id: str) -> dict[str, Any]:
    """The ledger's balances; every currency the merchant has money in appears in both lists."""
    async with db.connection() as conn:
        accounts = await ledger_store.merchant_balances(conn, merchant_id)
    by_kind: dict[str, dict[str, int]] = {"merchant_pending": {}, "merchant_available": {}}
    for a in accounts:
        if a["kind"] in by_kind:
            by_kind[a["kind"]][a["currency"]] = int(a["amount"])
    currencies = sorted({c for amounts in by_kind.values() for c in amounts})
    return {
        "object": "balance",
        "waiting_funds": [{"currency": c, "amount": by_kind["merchant_pending"].get(c, 0)} for c in currencies],
        "available": [{"currency": c, "amount": by_kind["merchant_available"].get(c, 0)} for c in currencies],
    }


async def balance_report(db: Database, merchant_id: str) -> list[dict[str, Any]]:
    """Per currency: the ledger's waiting_funds and available beside the payables' sums (`tender balance`)."""
    async with db.connection() as conn, conn.transaction():
        # One snapshot for both reads: a capture committing in between must not look like a mismatch.
        await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        if await merchant_store.get_merchant(conn, merchant_id) is None:
            raise NotFound("No such merchant.", param="merchant")
        accounts = await ledger_store.merchant_balances(conn, merchant_id)
        cur = await conn.execute(
            "SELECT currency, status, sum(net) AS amount FROM payables WHERE merchant_id = %s"
            " GROUP BY currency, status",
            (merchant_id,),
        )
        sums = await cur.fetchall()
    report: dict[str, dict[str, Any]] = {}

    def row(currency: str) -> dict[str, Any]:
        return report.setdefault(
            currency,
            {"currency": currency, "waiting_funds": 0, "available": 0, "payables_waiting_funds": 0, "payables_paid": 0},
        )

    for a in accounts:
        if a["kind"] == "merchant_pending":
            row(a["currency"])["waiting_funds"] = int(a["amount"])
        elif a["kind"] == "merchant_available":
            row(a["currency"])["available"] = int(a["amount"])
    for s in sums:
        row(s["currency"])[f"payables_{s['status']}"] = int(s["amount"])
    for r in report.values():
        r["matches"] = r["waiting_funds"] == r["payables_waiting_funds"] and r["available"] == r["payables_paid"]
    return [report[c] for c in sorted(report)]


# -- balance transactions --------------------------------------------------------------------------------


def balance_transaction_object(row: dict[str, Any], status: str) -> dict[str, Any]:
    """`status` is the ledger's (store/ledger.py `entry_statuses`), not `available_on` compared with today:
    money whose date has come stays pending until the settlement moves it, as the balance shows it."""
    return {
        "id": row["id"],
        "object": "balance_transaction",
        "type": row["type"],
        "amount": row["amount"],
        "fee": row["fee"],
        "net": row["net"],
        "currency": row["currency"],
        "available_on": row["available_on"].isoformat(),
        "status": status,
        "source": row["source_id"],
        "created": iso(row["created"]),
    }


async def list_balance_transactions(
    db: Database,
    merchant_id: str,
    *,
    limit: int = 10,
    starting_after: str | None = None,
    type: str | None = None,
    source: str | None = None,
) -> tuple[list[dict[str, Any]], bool]:
    _one_of(type, TRANSACTION_TYPES, "type")
    async with db.connection() as conn:
        rows, more = await newest_first(
            conn,
            "journal_entries",
            ENTRY_COLUMNS,
            limit=limit,
            starting_after=starting_after,
            equal={"merchant_id": merchant_id, "type": type, "source_id": source},
        )
        statuses = await ledger_store.entry_statuses(conn, [r["id"] for r in rows])
    return [balance_transaction_object(r, statuses[r["id"]]) for r in rows], more


async def get_balance_transaction(db: Database, merchant_id: str, txn_id: str) -> dict[str, Any]:
    async with db.connection() as conn:
        cur = await conn.execute(
            f"SELECT {ENTRY_COLUMNS} FROM journal_entries WHERE id = %s AND merchant_id = %s", (txn_id, merchant_id)
        )
        row = await cur.fetchone()
        if row is None:
            raise NotFound("No such balance transaction.", param="id")
        statuses = await ledger_store.entry_statuses(conn, [row["id"]])
    return balance_transaction_object(row, statuses[row["id"]])
