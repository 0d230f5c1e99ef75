"""SQL for customers. A deleted customer keeps its row (payments and subscriptions name it) but is never found."""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime
from typing import Any

from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from tender.domain.recurring import Customer
from tender.store.db import Conn, Page, newest_first
from tender.store.rows import fetch_one

COLUMNS = ", ".join(f.name for f in fields(Customer))


async def insert(conn: Conn, c: Customer) -> None:
    await conn.execute(
        "INSERT INTO customers (id, merchant_id, email, name, metadata, default_payment_method, test_clock_id,"
        " created, updated) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (c.id, c.merchant_id, c.email, c.name, Jsonb(c.metadata), c.default_payment_method, c.test_clock_id,
         c.created, c.updated),
    )  # fmt: skip


async def get(conn: Conn, merchant_id: str, customer_id: str, *, lock: bool = False) -> Customer | None:
    """This merchant's customer, unless deleted; `lock`: FOR UPDATE, for a change of it."""
    return await fetch_one(
        conn,
        Customer,
        f"SELECT {COLUMNS} FROM customers WHERE id = %s AND merchant_id = %s AND deleted IS NULL"
        + (" FOR UPDATE" if lock else ""),
        (customer_id, merchant_id),
    )


async def update(
    conn: Conn,
    customer_id: str,
    *,
    email: str | None,
    name: str | None,
    metadata: dict[str, str],
    default_payment_method: str | None,
    now: datetime,
) -> Customer:
    customer = await fetch_one(
        conn,
        Customer,
        "UPDATE customers SET email = %s, name = %s, metadata = %s, default_payment_method = %s, updated = %s"
        f" WHERE id = %s RETURNING {COLUMNS}",
        (email, name, Jsonb(metadata), default_payment_method, now, customer_id),
    )
    assert customer is not None  # the caller holds its lock
    return customer


async def set_default_payment_method(
    conn: Conn, customer_id: str, payment_method_id: str | None, now: datetime
) -> None:
    await conn.execute(
        "UPDATE customers SET default_payment_method = %s, updated = %s WHERE id = %s",
        (payment_method_id, now, customer_id),
    )


async def clear_default_payment_method(conn: Conn, payment_method_id: str, now: datetime) -> None:
    """A detached method is no customer's default any more."""
    await conn.execute(
        "UPDATE customers SET default_payment_method = NULL, updated = %s WHERE default_payment_method = %s",
        (now, payment_method_id),
    )


async def mark_deleted(conn: Conn, customer_id: str, now: datetime) -> None:
    await conn.execute("UPDATE customers SET deleted = %s, updated = %s WHERE id = %s", (now, now, customer_id))


async def list_(
    conn: Conn, merchant_id: str, *, limit: int, starting_after: str | None, email: str | None
) -> Page[Customer]:
    return await newest_first(
        conn, "customers", COLUMNS, limit=limit, starting_after=starting_after,
        equal={"merchant_id": merchant_id, "email": email}, conditions=(("deleted IS NOT DISTINCT FROM %s", None),),
        row_factory=class_row(Customer),
    )  # fmt: skip


async def clock_time(conn: Conn, customer_id: str) -> datetime | None:
    """The frozen time of the customer's test clock; None: the customer is on the wall clock (or unknown)."""
    cur = await conn.execute(
        "SELECT t.frozen_time FROM customers c JOIN test_clocks t ON t.id = c.test_clock_id WHERE c.id = %s",
        (customer_id,),
    )
    row: dict[str, Any] | None = await cur.fetchone()
    return row["frozen_time"] if row else None
