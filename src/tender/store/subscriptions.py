"""SQL for subscriptions: insert, read, lock, write back a step, and find what is due on a test clock.

Wall-clock subscriptions are claimed by the renewal pump through store/claims.py (`next_run_at`); those on a
test clock have `next_run_at` NULL (a CHECK says so) and are found by `clock_due_at` in the clock's time.
"""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime
from typing import Any

from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from tender.domain.recurring import Subscription
from tender.domain.subscriptions import CustomerBilling
from tender.store.db import Conn, Page, newest_first
from tender.store.rows import fetch_all, fetch_one

FIELDS = tuple(f.name for f in fields(Subscription))
COLUMNS = ", ".join(FIELDS)


def _values(s: Subscription) -> dict[str, Any]:
    values = {name: getattr(s, name) for name in FIELDS}
    values["metadata"] = Jsonb(s.metadata)
    values["dunning_days"] = list(s.dunning_days)
    return values


_INSERT = (
    f"INSERT INTO subscriptions ({COLUMNS}) VALUES ({', '.join(f'%({n})s' for n in FIELDS)})"
    " ON CONFLICT (merchant_id, reference) WHERE reference IS NOT NULL DO NOTHING RETURNING 1"
)


async def insert(conn: Conn, s: Subscription) -> bool:
    """Insert; False (nothing written) when the merchant already has a subscription with this reference."""
    cur = await conn.execute(_INSERT, _values(s))
    return await cur.fetchone() is not None


# Everything a step may change; the schedule columns (next_run_at, clock_due_at) are written with it, and
# the lease is let go (tries back to 0: the step is done).
_MUTABLE = (
    "payment_method_id", "amount", "status", "billing_anchor", "current_period_start", "current_period_end",
    "trial_end", "cancel_at_period_end", "canceled_at", "ended_at", "next_amount", "latest_invoice_id",
    "metadata", "clock_due_at", "next_run_at", "updated",
)  # fmt: skip
_UPDATE = (
    "UPDATE subscriptions SET "
    + ", ".join(f"{c} = %({c})s" for c in _MUTABLE)
    + ", lease_token = NULL, tries = 0, last_error = NULL WHERE id = %(id)s"
)


async def update(conn: Conn, s: Subscription) -> None:
    """Write the subscription's state back (the caller holds its row lock or lease)."""
    await conn.execute(_UPDATE, _values(s))


async def get(conn: Conn, merchant_id: str, subscription_id: str) -> Subscription | None:
    return await fetch_one(
        conn, Subscription, f"SELECT {COLUMNS} FROM subscriptions WHERE id = %s AND merchant_id = %s",
        (subscription_id, merchant_id),
    )  # fmt: skip


async def lock(conn: Conn, subscription_id: str, merchant_id: str | None = None) -> Subscription | None:
    """The subscription, its row locked until the transaction ends (another merchant's: None)."""
    query = f"SELECT {COLUMNS} FROM subscriptions WHERE id = %s"
    params: list[Any] = [subscription_id]
    if merchant_id is not None:
        query += " AND merchant_id = %s"
        params.append(merchant_id)
    return await fetch_one(conn, Subscription, query + " FOR UPDATE", params)


async def lock_leased(conn: Conn, subscription_id: str, token: Any) -> Subscription | None:
    """The subscription, locked, if the renewal pump's lease `token` still holds on it (else None: taken over)."""
    return await fetch_one(
        conn, Subscription, f"SELECT {COLUMNS} FROM subscriptions WHERE id = %s AND lease_token = %s FOR UPDATE",
        (subscription_id, token),
    )  # fmt: skip


async def find_by_reference(conn: Conn, merchant_id: str, reference: str) -> str | None:
    cur = await conn.execute(
        "SELECT id FROM subscriptions WHERE merchant_id = %s AND reference = %s", (merchant_id, reference)
    )
    row = await cur.fetchone()
    return str(row["id"]) if row else None


async def list_(
    conn: Conn,
    merchant_id: str,
    *,
    limit: int,
    starting_after: str | None,
    customer_id: str | None,
    status: str | None,
) -> Page[Subscription]:
    return await newest_first(
        conn, "subscriptions", COLUMNS, limit=limit, starting_after=starting_after,
        equal={"merchant_id": merchant_id, "customer_id": customer_id, "status": status},
        row_factory=class_row(Subscription),
    )  # fmt: skip


async def next_due_on_clock(conn: Conn, clock_id: str, until: datetime) -> Subscription | None:
    """The subscription of this clock due earliest, at or before `until` (clock time), locked; None when
    nothing is. One at a time, in time order: each step may make the next one due."""
    return await fetch_one(
        conn, Subscription,
        f"SELECT {COLUMNS} FROM subscriptions WHERE test_clock_id = %s AND clock_due_at <= %s"
        " ORDER BY clock_due_at, id LIMIT 1 FOR UPDATE SKIP LOCKED",
        (clock_id, until),
    )  # fmt: skip


async def on_clock(conn: Conn, clock_id: str) -> list[Subscription]:
    return await fetch_all(
        conn, Subscription, f"SELECT {COLUMNS} FROM subscriptions WHERE test_clock_id = %s ORDER BY id", (clock_id,)
    )


async def payments_in_flight_on_clock(conn: Conn, clock_id: str) -> int:
    """How many payments of this clock's invoices have not reached a final status yet."""
    cur = await conn.execute(
        "SELECT count(*) AS n FROM payments p JOIN invoices i ON i.id = p.invoice_id"
        " JOIN subscriptions s ON s.id = i.subscription_id"
        " WHERE s.test_clock_id = %s AND p.status NOT IN ('succeeded', 'failed', 'canceled')",
        (clock_id,),
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row["n"])


async def customer_billing(conn: Conn, merchant_id: str, customer_id: str) -> CustomerBilling | None:
    """The customer (not deleted) of this merchant with its clock's time and the merchant's billing settings."""
    return await fetch_one(
        conn, CustomerBilling,
        "SELECT c.id AS customer_id, c.default_payment_method, c.test_clock_id, t.frozen_time AS clock_time,"
        " m.dunning_days, m.on_final_failure"
        " FROM customers c JOIN merchants m ON m.id = c.merchant_id"
        " LEFT JOIN test_clocks t ON t.id = c.test_clock_id"
        " WHERE c.id = %s AND c.merchant_id = %s AND c.deleted IS NULL",
        (customer_id, merchant_id),
    )  # fmt: skip


async def method_customer(conn: Conn, merchant_id: str, payment_method_id: str) -> tuple[bool, str | None]:
    """Whether this merchant has the saved payment method, and the customer it is attached to."""
    cur = await conn.execute(
        "SELECT customer_id FROM payment_methods WHERE id = %s AND merchant_id = %s", (payment_method_id, merchant_id)
    )
    row = await cur.fetchone()
    return (row is not None, row["customer_id"] if row else None)


async def clock_time(conn: Conn, clock_id: str) -> datetime | None:
    cur = await conn.execute("SELECT frozen_time FROM test_clocks WHERE id = %s", (clock_id,))
    row = await cur.fetchone()
    return row["frozen_time"] if row else None


async def postpone(conn: Conn, subscription_id: str, when: datetime, error: str, token: Any = None) -> None:
    """A step that raised: due again at `when` (wall clock; on a test clock at the next advance), its error
    kept on the row, the lease let go (only where `token` still holds it, when given)."""
    await conn.execute(
        "UPDATE subscriptions SET next_run_at = CASE WHEN test_clock_id IS NULL THEN %s END, last_error = %s,"
        " lease_token = NULL WHERE id = %s AND (%s::uuid IS NULL OR lease_token = %s::uuid)",
        (when, error, subscription_id, token, token),
    )


async def of_customer(conn: Conn, customer_id: str) -> list[Subscription]:
    return await fetch_all(
        conn, Subscription, f"SELECT {COLUMNS} FROM subscriptions WHERE customer_id = %s ORDER BY id", (customer_id,)
    )


async def chargeable_method(conn: Conn, merchant_id: str, customer_id: str, own: str | None) -> str | None:
    """`own` if it is attached to the customer, else the customer's default if attached; None otherwise (or
    for a deleted customer). One round trip: it runs for every renewal."""
    cur = await conn.execute(
        "SELECT coalesce("
        " (SELECT p.id FROM payment_methods p WHERE p.id = %s AND p.customer_id = c.id),"
        " (SELECT p.id FROM payment_methods p WHERE p.id = c.default_payment_method AND p.customer_id = c.id)"
        ") AS method FROM customers c WHERE c.id = %s AND c.merchant_id = %s AND c.deleted IS NULL",
        (own, customer_id, merchant_id),
    )
    row = await cur.fetchone()
    return row["method"] if row else None
