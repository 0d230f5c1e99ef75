"""SQL for invoices: exactly one per subscription and period (the unique key (subscription_id, period_start):
`insert_once` is an INSERT ... ON CONFLICT DO NOTHING, never a check-then-insert), read, lock, write back."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from psycopg.rows import class_row

from tender.domain.recurring import Invoice
from tender.store.db import Conn, Page, newest_first
from tender.store.rows import fetch_one

FIELDS = tuple(f.name for f in fields(Invoice))
COLUMNS = ", ".join(FIELDS)

_INSERT = (
    f"INSERT INTO invoices ({COLUMNS}) VALUES ({', '.join(f'%({n})s' for n in FIELDS)})"
    " ON CONFLICT (subscription_id, period_start) DO NOTHING RETURNING 1"
)


async def insert_once(conn: Conn, invoice: Invoice) -> tuple[Invoice, bool]:
    """The period's invoice: `invoice` inserted, or the one already there (locked either way); and whether
    this call made it."""
    cur = await conn.execute(_INSERT, {n: getattr(invoice, n) for n in FIELDS})
    made = await cur.fetchone() is not None
    found = await fetch_one(
        conn, Invoice,
        f"SELECT {COLUMNS} FROM invoices WHERE subscription_id = %s AND period_start = %s FOR UPDATE",
        (invoice.subscription_id, invoice.period_start),
    )  # fmt: skip
    assert found is not None  # inserted, or the conflicting row (committed: ON CONFLICT waited for it)
    return found, made


_MUTABLE = ("amount_paid", "status", "payment_id", "attempt_count", "next_payment_attempt", "updated")
_UPDATE = "UPDATE invoices SET " + ", ".join(f"{c} = %({c})s" for c in _MUTABLE) + " WHERE id = %(id)s"


async def update(conn: Conn, invoice: Invoice) -> None:
    """Write the invoice's state back (the caller holds its row lock)."""
    await conn.execute(_UPDATE, {c: getattr(invoice, c) for c in ("id", *_MUTABLE)})


async def get(conn: Conn, merchant_id: str, invoice_id: str) -> Invoice | None:
    return await fetch_one(
        conn, Invoice, f"SELECT {COLUMNS} FROM invoices WHERE id = %s AND merchant_id = %s", (invoice_id, merchant_id)
    )


async def lock(conn: Conn, invoice_id: str) -> Invoice | None:
    return await fetch_one(conn, Invoice, f"SELECT {COLUMNS} FROM invoices WHERE id = %s FOR UPDATE", (invoice_id,))


async def list_(
    conn: Conn,
    merchant_id: str,
    *,
    limit: int,
    starting_after: str | None,
    subscription_id: str | None,
    customer_id: str | None,
    status: str | None,
) -> Page[Invoice]:
    equal: dict[str, Any] = {
        "merchant_id": merchant_id,
        "subscription_id": subscription_id,
        "customer_id": customer_id,
        "status": status,
    }
    return await newest_first(
        conn, "invoices", COLUMNS, limit=limit, starting_after=starting_after, equal=equal,
        row_factory=class_row(Invoice),
    )  # fmt: skip
