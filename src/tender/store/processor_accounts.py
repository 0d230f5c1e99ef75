"""SQL for merchants' own processor accounts (credentials kept encrypted by the vault)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from tender.store.db import Conn
from tender.store.rows import fetch_all, fetch_one

_COLUMNS = "id, merchant_id, processor, credentials_ct, hint, created"


@dataclass(frozen=True, slots=True)
class AccountRow:
    id: str
    merchant_id: str
    processor: str
    credentials_ct: bytes  # vault ciphertext, bound to `id`
    hint: str
    created: datetime

    def __repr__(self) -> str:  # never the ciphertext in a log line
        return f"AccountRow(id={self.id!r}, processor={self.processor!r}, hint={self.hint!r})"


async def upsert(
    conn: Conn, *, id: str, merchant_id: str, processor: str, credentials_ct: bytes, hint: str
) -> AccountRow:
    """The merchant's account at `processor`, replacing the one it had (a key rotated at the processor)."""
    await conn.execute(
        "DELETE FROM processor_accounts WHERE merchant_id = %s AND processor = %s", (merchant_id, processor)
    )
    row = await fetch_one(
        conn,
        AccountRow,
        "INSERT INTO processor_accounts (id, merchant_id, processor, credentials_ct, hint)"
        f" VALUES (%s, %s, %s, %s, %s) RETURNING {_COLUMNS}",
        (id, merchant_id, processor, credentials_ct, hint),
    )
    assert row is not None  # an INSERT ... RETURNING returns its row
    return row


async def list_(conn: Conn, merchant_id: str) -> list[AccountRow]:
    return await fetch_all(
        conn,
        AccountRow,
        f"SELECT {_COLUMNS} FROM processor_accounts WHERE merchant_id = %s ORDER BY id DESC",
        (merchant_id,),
    )


async def for_processor(conn: Conn, merchant_id: str, processor: str) -> AccountRow | None:
    return await fetch_one(
        conn,
        AccountRow,
        f"SELECT {_COLUMNS} FROM processor_accounts WHERE merchant_id = %s AND processor = %s",
        (merchant_id, processor),
    )
