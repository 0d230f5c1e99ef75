"""The merchant's money, read: payables, settlements, the balance and its balance transactions.

The balance is the ledger's (the merchant's pending and available accounts); the payables' sums by status
always equal it, which `tender ledger verify` and `tender balance` prove.
"""

from __future__ import annotations

from dataclasses import replace

from tender.domain.money_models import Balance, BalanceLine, BalanceTransaction, Payable, Settlement
from tender.errors import InvalidRequest, NotFound
from tender.store import ledger as ledger_store
from tender.store import merchants as merchant_store
from tender.store import payables as payable_store
from tender.store import settlements as settlement_store
from tender.store.db import Database, Page

PAYABLE_STATUSES = ("waiting_funds", "paid")
TRANSACTION_TYPES = ("payment", "refund", "settlement")


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
) -> Page[Payable]:
    _one_of(status, PAYABLE_STATUSES, "status")
    async with db.connection() as conn:
        return await payable_store.list_(
            conn, merchant_id, limit=limit, starting_after=starting_after, status=status, payment_id=payment
        )


async def get_payable(db: Database, merchant_id: str, payable_id: str) -> Payable:
    async with db.connection() as conn:
        payable = await payable_store.get(conn, merchant_id, payable_id)
    if payable is None:
        raise NotFound("No such payable.", param="id")
    return payable


# -- settlements -----------------------------------------------------------------------------------------


async def list_settlements(
    db: Database, merchant_id: str, *, limit: int = 10, starting_after: str | None = None
) -> Page[Settlement]:
    async with db.connection() as conn:
        return await settlement_store.list_(conn, merchant_id, limit=limit, starting_after=starting_after)


async def get_settlement(db: Database, merchant_id: str, settlement_id: str) -> Settlement:
    async with db.connection() as conn:
        settlement = await settlement_store.get(conn, merchant_id, settlement_id)
    if settlement is None:  # another merchant's settlement is as missing as one that does not exist
        raise NotFound("No such settlement.", param="id")
    return settlement


# -- balance ---------------------------------------------------------------------------------------------


async def balance(db: Database, merchant_id: str) -> Balance:
    """The ledger's balances: the merchant's pending (waiting funds) and available accounts."""
    async with db.connection() as conn:
        accounts = await ledger_store.merchant_balances(conn, merchant_id)
    return Balance(
        waiting_funds={a.currency: a.amount for a in accounts if a.kind == "merchant_pending"},
        available={a.currency: a.amount for a in accounts if a.kind == "merchant_available"},
    )


async def balance_report(db: Database, merchant_id: str) -> list[BalanceLine]:
    """Per currency: the ledger's waiting_funds and available beside the payables' sums (`tender balance`)."""
    async with db.snapshot() as conn:
        # One snapshot for both reads: a capture committing in between must not look like a mismatch.
        if await merchant_store.get_merchant(conn, merchant_id) is None:
            raise NotFound("No such merchant.", param="merchant")
        accounts = await ledger_store.merchant_balances(conn, merchant_id)
        sums = await payable_store.sums_by_status(conn, merchant_id)
    report: dict[str, BalanceLine] = {}

    def line(currency: str) -> BalanceLine:
        return report.setdefault(currency, BalanceLine(currency))

    for a in accounts:
        if a.kind == "merchant_pending":
            report[a.currency] = replace(line(a.currency), waiting_funds=a.amount)
        elif a.kind == "merchant_available":
            report[a.currency] = replace(line(a.currency), available=a.amount)
    for currency, status, amount in sums:
        if status == "waiting_funds":
            report[currency] = replace(line(currency), payables_waiting_funds=amount)
        else:
            report[currency] = replace(line(currency), payables_paid=amount)
    return [report[c] for c in sorted(report)]


# -- balance transactions --------------------------------------------------------------------------------


async def list_balance_transactions(
    db: Database,
    merchant_id: str,
    *,
    limit: int = 10,
    starting_after: str | None = None,
    type: str | None = None,
    source: str | None = None,
) -> Page[BalanceTransaction]:
    _one_of(type, TRANSACTION_TYPES, "type")
    async with db.connection() as conn:
        return await ledger_store.balance_transactions(
            conn, merchant_id, limit=limit, starting_after=starting_after, type=type, source_id=source
        )


async def get_balance_transaction(db: Database, merchant_id: str, txn_id: str) -> BalanceTransaction:
    async with db.connection() as conn:
        found = await ledger_store.balance_transaction(conn, merchant_id, txn_id)
    if found is None:
        raise NotFound("No such balance transaction.", param="id")
    return found
