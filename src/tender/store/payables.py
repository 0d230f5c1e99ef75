"""SQL for payables: every INSERT and UPDATE of the table is here (made by captures and refunds, paid by
settlements), and the reads of them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

from psycopg.rows import class_row

from tender.domain.fees import PayableStatus
from tender.domain.money_models import CapturedPayment, DueGroup, Payable
from tender.store.db import Conn, Page, newest_first
from tender.store.rows import fetch_all, fetch_one

COLUMNS = (
    "id, type, payment_id, refund_id, status, amount, fee, net, currency, payment_method, funding, payment_date,"
    " settlement_id, created, paid_at, merchant_id"
)


async def captured_with_fee_rules(
    conn: Conn, payment_ids: Sequence[str]
) -> list[tuple[CapturedPayment, list[Mapping[str, Any]] | None]]:
    """Of these payments, those captured (`succeeded`, some amount captured) that have no payable yet, each with
    its merchant's fee plan rules (None: no plan of its own), in one round trip (it was two: the payments, then
    fee_plans; issue 16)."""
    cur = await conn.execute(
        "SELECT p.id, p.merchant_id, p.amount_captured, p.currency, p.payment_method, p.processor,"
        " f.rules AS fee_rules FROM payments p LEFT JOIN fee_plans f ON f.merchant_id = p.merchant_id"
        " WHERE p.id = ANY(%s) AND p.status = 'succeeded' AND p.amount_captured > 0"
        " AND NOT EXISTS (SELECT 1 FROM payables x WHERE x.payment_id = p.id AND x.type = 'payment')",
        (list(payment_ids),),
    )
    return [
        (CapturedPayment(**{k: v for k, v in row.items() if k != "fee_rules"}), row["fee_rules"])
        for row in await cur.fetchall()
    ]


# unnest's arrays go in binary (%b): cheaper to dump than text arrays (store/payments.py, issue 16).
# One statement for a batch's payables (it was one INSERT per payable).
_INSERT = f"""
INSERT INTO payables (id, merchant_id, payment_id, refund_id, type, status, amount, fee, net, currency,
                      payment_method, funding, payment_date, paid_at, created)
SELECT * FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::bigint[],
                     %b::bigint[], %b::bigint[], %b::text[], %b::text[], %b::text[], %b::date[], %b::timestamptz[],
                     %b::timestamptz[])
ON CONFLICT (payment_id) WHERE type = 'payment' DO NOTHING RETURNING {COLUMNS}
"""


async def insert(conn: Conn, payables: Sequence[Payable]) -> list[Payable]:
    """Insert payables; returns those inserted, as stored, in the order given. A capture's payable that another
    path inserted first (a payment has at most one, by a unique index) is skipped, not an error."""
    if not payables:
        return []
    async with conn.cursor(row_factory=class_row(Payable)) as cur:
        await cur.execute(
            _INSERT,
            (
                [p.id for p in payables], [p.merchant_id for p in payables], [p.payment_id for p in payables],
                [p.refund_id for p in payables], [p.type for p in payables], [p.status for p in payables],
                [p.amount for p in payables], [p.fee for p in payables], [p.net for p in payables],
                [p.currency for p in payables], [p.payment_method for p in payables], [p.funding for p in payables],
                [p.payment_date for p in payables], [p.paid_at for p in payables], [p.created for p in payables],
            ),
        )  # fmt: skip
        made = {p.id: p for p in await cur.fetchall()}
    return [made[p.id] for p in payables if p.id in made]


async def captures_for_update(conn: Conn, payment_ids: Sequence[str]) -> dict[str, Payable]:
    """The payments' capture payables, row-locked: a settlement cannot pay one out while its refund is
    being recorded, so the refund follows the status the payable really has. Locked in id order, as the
    settlement locks its payables, so the two queue instead of deadlocking."""
    found = await fetch_all(
        conn,
        Payable,
        f"SELECT {COLUMNS} FROM payables WHERE payment_id = ANY(%s) AND type = 'payment' ORDER BY id FOR UPDATE",
        (sorted(set(payment_ids)),),
    )
    return {p.payment_id: p for p in found}


async def get(conn: Conn, merchant_id: str, payable_id: str) -> Payable | None:
    return await fetch_one(
        conn, Payable, f"SELECT {COLUMNS} FROM payables WHERE id = %s AND merchant_id = %s", (payable_id, merchant_id)
    )


async def list_(
    conn: Conn, merchant_id: str, *, limit: int, starting_after: str | None, status: str | None, payment_id: str | None
) -> Page[Payable]:
    return await newest_first(
        conn, "payables", COLUMNS, limit=limit, starting_after=starting_after,
        equal={"merchant_id": merchant_id, "status": status, "payment_id": payment_id},
        row_factory=class_row(Payable),
    )  # fmt: skip


# -- settling ----------------------------------------------------------------------------------------------


async def due_groups(conn: Conn, as_of: date, limit: int) -> list[DueGroup]:
    """(merchant, currency, payment date) groups with payables due by `as_of`, oldest day first."""
    return await fetch_all(
        conn,
        DueGroup,
        "SELECT merchant_id, currency, payment_date FROM payables"
        " WHERE status = 'waiting_funds' AND payment_date <= %s"
        " GROUP BY payment_date, merchant_id, currency ORDER BY payment_date, merchant_id, currency LIMIT %s",
        (as_of, limit),
    )


async def count_due(conn: Conn, as_of: date) -> tuple[int, int]:
    """(groups, payables) due by `as_of`."""
    cur = await conn.execute(
        "SELECT count(DISTINCT (merchant_id, currency, payment_date)) AS groups, count(*) AS payables"
        " FROM payables WHERE status = 'waiting_funds' AND payment_date <= %s",
        (as_of,),
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row["groups"]), int(row["payables"])


async def waiting_for_update(conn: Conn, group: DueGroup) -> list[tuple[str, int]]:
    """(id, net) of the group's payables still waiting for their funds, row-locked in id order."""
    cur = await conn.execute(
        "SELECT id, net FROM payables WHERE merchant_id = %s AND currency = %s AND payment_date = %s"
        " AND status = 'waiting_funds' ORDER BY id FOR UPDATE",
        (group.merchant_id, group.currency, group.payment_date),
    )
    return [(r["id"], int(r["net"])) for r in await cur.fetchall()]


async def mark_paid(conn: Conn, payable_ids: Sequence[str], settlement_id: str) -> list[Payable]:
    """Waiting payables become `paid` in the settlement; returns those changed, as stored."""
    return await fetch_all(
        conn,
        Payable,
        "UPDATE payables SET status = 'paid', paid_at = now(), settlement_id = %s"
        f" WHERE id = ANY(%s) AND status = 'waiting_funds' RETURNING {COLUMNS}",
        (settlement_id, list(payable_ids)),
    )


async def sums_by_status(conn: Conn, merchant_id: str) -> list[tuple[str, PayableStatus, int]]:
    """(currency, status, sum of net) of the merchant's payables."""
    cur = await conn.execute(
        "SELECT currency, status, sum(net) AS amount FROM payables WHERE merchant_id = %s GROUP BY currency, status",
        (merchant_id,),
    )
    return [(r["currency"], r["status"], int(r["amount"])) for r in await cur.fetchall()]
