"""SQL for settlements: one per merchant, currency and day, grown by late payables of a day already settled."""

from __future__ import annotations

from psycopg.rows import class_row

from tender.domain.money_models import DueGroup, Settlement
from tender.store.db import Conn, Page, newest_first
from tender.store.rows import fetch_one

COLUMNS = "id, merchant_id, currency, date, amount, payables, created, updated"

# First key of the two-int advisory lock ("STL\0"); the second is a hash of the group. The two-int key space
# does not overlap the one-bigint space the migrations' lock uses; a hash collision only serializes two groups.
_LOCK_NAMESPACE = 0x53544C00


async def lock_group(conn: Conn, group: DueGroup) -> None:
    """Settlers of the same group queue here until the holder's transaction ends."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock(%s, hashtext(%s))",
        (_LOCK_NAMESPACE, f"{group.merchant_id}:{group.currency}:{group.payment_date.isoformat()}"),
    )


async def add(
    conn: Conn, settlement_id: str, group: DueGroup, *, amount: int, payables: int
) -> tuple[Settlement, bool]:
    """The group's settlement with `amount` and `payables` added: made with `settlement_id` (True) or, if the
    day already has one, grown (False)."""
    async with conn.cursor() as cur:
        await cur.execute(
            "INSERT INTO settlements (id, merchant_id, currency, date, amount, payables)"
            " VALUES (%s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (merchant_id, currency, date) DO UPDATE SET amount = settlements.amount + excluded.amount,"
            " payables = settlements.payables + excluded.payables, updated = now()"
            f" RETURNING {COLUMNS}, (xmax = 0) AS inserted",
            (settlement_id, group.merchant_id, group.currency, group.payment_date, amount, payables),
        )
        row = await cur.fetchone()
    assert row is not None
    inserted = bool(row.pop("inserted"))
    return Settlement(**row), inserted


async def get(conn: Conn, merchant_id: str, settlement_id: str) -> Settlement | None:
    return await fetch_one(
        conn, Settlement, f"SELECT {COLUMNS} FROM settlements WHERE id = %s AND merchant_id = %s",
        (settlement_id, merchant_id),
    )  # fmt: skip


async def list_(conn: Conn, merchant_id: str, *, limit: int, starting_after: str | None) -> Page[Settlement]:
    return await newest_first(
        conn, "settlements", COLUMNS, limit=limit, starting_after=starting_after,
        equal={"merchant_id": merchant_id}, row_factory=class_row(Settlement),
    )  # fmt: skip
