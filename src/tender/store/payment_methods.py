"""SQL for saved payment methods (the card's number is in vault_cards, by `card_id`)."""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime
from typing import Any

from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from tender.domain.recurring import SavedPaymentMethod
from tender.store.db import Conn, Page, newest_first
from tender.store.rows import fetch_one

FIELDS = tuple(f.name for f in fields(SavedPaymentMethod))
COLUMNS = ", ".join(FIELDS)


async def insert(conn: Conn, m: SavedPaymentMethod) -> None:
    values: dict[str, Any] = {name: getattr(m, name) for name in FIELDS}
    values["processor_refs"] = Jsonb(m.processor_refs)
    await conn.execute(
        f"INSERT INTO payment_methods ({COLUMNS}) VALUES ({', '.join(f'%({n})s' for n in FIELDS)})", values
    )


async def get(conn: Conn, merchant_id: str, payment_method_id: str, *, lock: bool = False) -> SavedPaymentMethod | None:
    return await fetch_one(
        conn,
        SavedPaymentMethod,
        f"SELECT {COLUMNS} FROM payment_methods WHERE id = %s AND merchant_id = %s" + (" FOR UPDATE" if lock else ""),
        (payment_method_id, merchant_id),
    )


async def find_by_card(conn: Conn, card_id: str) -> SavedPaymentMethod | None:
    return await fetch_one(
        conn, SavedPaymentMethod, f"SELECT {COLUMNS} FROM payment_methods WHERE card_id = %s", (card_id,)
    )


async def set_customer(
    conn: Conn, payment_method_id: str, customer_id: str | None, now: datetime
) -> SavedPaymentMethod:
    method = await fetch_one(
        conn,
        SavedPaymentMethod,
        f"UPDATE payment_methods SET customer_id = %s, updated = %s WHERE id = %s RETURNING {COLUMNS}",
        (customer_id, now, payment_method_id),
    )
    assert method is not None  # the caller holds its lock
    return method


async def set_processor_ref(conn: Conn, payment_method_id: str, processor: str, ref: dict[str, Any]) -> None:
    """Remember what `processor` made of this method (created there once, reused after)."""
    await conn.execute(
        "UPDATE payment_methods SET processor_refs = processor_refs || jsonb_build_object(%s::text, %s::jsonb),"
        " updated = now() WHERE id = %s",
        (processor, Jsonb(ref), payment_method_id),
    )


async def list_for_customer(
    conn: Conn, merchant_id: str, customer_id: str, *, limit: int, starting_after: str | None
) -> Page[SavedPaymentMethod]:
    return await newest_first(
        conn, "payment_methods", COLUMNS, limit=limit, starting_after=starting_after,
        equal={"merchant_id": merchant_id, "customer_id": customer_id}, row_factory=class_row(SavedPaymentMethod),
    )  # fmt: skip


async def vault_card_view(conn: Conn, card_id: str) -> dict[str, Any] | None:
    """A vault card's public fields (never its ciphertexts); None if its number is gone (its payment ended)."""
    cur = await conn.execute(
        "SELECT merchant_id, fingerprint, brand, last4, exp_month, exp_year, funding FROM vault_cards"
        " WHERE id = %s AND number_ct IS NOT NULL",
        (card_id,),
    )
    row: dict[str, Any] | None = await cur.fetchone()
    return row
