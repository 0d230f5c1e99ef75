"""Payables: what a capture earns the merchant (and a refund takes back), posted to the ledger in the same
transaction as the status change that causes it.

`record_captures` is called by every path that moves a payment to `succeeded` (the worker's pump, inbound
processor notifications) inside that path's transaction. It is idempotent: a payment has at most one
capture payable (a unique index) and one ledger entry (another), so a repeated call posts nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, tzinfo
from typing import Any

from tender.domain.fees import FeePlan, funding_of, payable_terms
from tender.domain.ids import BALANCE_TRANSACTION, PAYABLE, new_id
from tender.domain.ledger import Entry, capture_entry
from tender.services.fee_plans import plans_for
from tender.services.objects import iso
from tender.store import events
from tender.store import ledger as ledger_store
from tender.store.db import Conn, returned_ids


def business_date(moment: datetime, tz: tzinfo) -> date:
    return moment.astimezone(tz).date()


def payable_object(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "object": "payable",
        "type": row["type"],
        "payment": row["payment_id"],
        "refund": row["refund_id"],
        "status": row["status"],
        "amount": row["amount"],
        "fee": row["fee"],
        "net": row["net"],
        "currency": row["currency"],
        "payment_method": row["payment_method"],
        "funding": row["funding"],
        "payment_date": row["payment_date"].isoformat(),
        "settlement": row["settlement_id"],
        "created": iso(row["created"]),
        "paid_at": iso(row["paid_at"]) if row["paid_at"] else None,
    }


PAYABLE_COLUMNS = (
    "id, type, payment_id, refund_id, status, amount, fee, net, currency, payment_method, funding, payment_date,"
    " settlement_id, created, paid_at, merchant_id"
)


async def record_captures(conn: Conn, payment_ids: Sequence[str], *, tz: tzinfo, now: datetime) -> int:
    """Payables and ledger entries for payments that are now captured; returns how many were made."""
    if not payment_ids:
        return 0
    cur = await conn.execute(
        "SELECT id, merchant_id, amount_captured, currency, payment_method, processor FROM payments"
        " WHERE id = ANY(%s) AND status = 'succeeded' AND amount_captured > 0"
        " AND NOT EXISTS (SELECT 1 FROM payables p WHERE p.payment_id = payments.id AND p.type = 'payment')",
        (list(payment_ids),),
    )
    captured = await cur.fetchall()
    if not captured:
        return 0
    plans: dict[str, FeePlan] = await plans_for(conn, (r["merchant_id"] for r in captured))
    today = business_date(now, tz)
    rows: list[tuple[Any, ...]] = []
    for r in captured:
        method, funding = r["payment_method"].get("type", "card"), funding_of(r["payment_method"])
        terms = payable_terms(
            plans[r["merchant_id"]],
            amount=r["amount_captured"],
            currency=r["currency"],
            payment_method=method,
            funding=funding,
            captured_on=today,
        )
        paid = terms.status == "paid"
        rows.append(
            (new_id(PAYABLE), r["merchant_id"], r["id"], terms.status, terms.amount, terms.fee, terms.net,
             r["currency"], method, funding, terms.payment_date, now if paid else None, now, r["processor"])
        )  # fmt: skip
    # ON CONFLICT: a concurrent path captured the same payment first; only what we inserted is posted.
    async with conn.cursor() as c:
        await c.executemany(
            "INSERT INTO payables (id, merchant_id, payment_id, type, status, amount, fee, net, currency,"
            " payment_method, funding, payment_date, paid_at, created)"
            " VALUES (%s, %s, %s, 'payment', %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (payment_id) WHERE type = 'payment' DO NOTHING RETURNING id",
            [row[:-1] for row in rows],
            returning=True,
        )
        inserted = await returned_ids(c)
    made = [row for row in rows if row[0] in inserted]
    entries: list[Entry] = [
        capture_entry(
            new_id(BALANCE_TRANSACTION),
            merchant_id=mid,
            payment_id=pid,
            processor=processor,
            currency=currency,
            amount=amount,
            fee=fee,
            available=status == "paid",
            available_on=payment_date,
        )
        for (_, mid, pid, status, amount, fee, _net, currency, _m, _f, payment_date, _p, _c, processor) in made
    ]
    await ledger_store.post(conn, entries)
    paid_now = [row for row in made if row[3] == "paid"]
    if paid_now:
        cur = await conn.execute(
            f"SELECT {PAYABLE_COLUMNS} FROM payables WHERE id = ANY(%s)", ([row[0] for row in paid_now],)
        )
        await events.record(
            conn, [(p["merchant_id"], "payable.paid", p["id"], payable_object(p)) for p in await cur.fetchall()]
        )
    return len(made)
