"""SQL for dead letters: work that exhausted its automatic retries."""

from __future__ import annotations

from typing import Any

from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from tender.domain.models import DeadLetter, DeadLetterStatus
from tender.store.db import Conn, Page, newest_first
from tender.store.rows import fetch_one

_COLUMNS = "id, kind, object_id, operation, status, tries, last_error, history, created, updated, processor"


async def open_one(
    conn: Conn,
    *,
    id: str,
    kind: str,
    object_id: str,
    operation: str,
    tries: int,
    last_error: str | None,
    history: list[dict[str, Any]],
    processor: str | None = None,
) -> bool:
    """Record it, unless the same work already has an open dead letter. True if recorded."""
    cur = await conn.execute(
        "INSERT INTO dead_letters (id, kind, object_id, operation, tries, last_error, history, processor)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (kind, object_id, operation) WHERE status = 'open' DO NOTHING RETURNING id",
        (id, kind, object_id, operation, tries, last_error, Jsonb(history), processor),
    )
    return await cur.fetchone() is not None


async def resolve(conn: Conn, kind: str, object_ids: list[str]) -> None:
    """The work got done after all (a later look-up, a retry): its dead letters are closed."""
    if object_ids:
        await conn.execute(
            "UPDATE dead_letters SET status = 'resolved', updated = now()"
            " WHERE kind = %s AND object_id = ANY(%s) AND status IN ('open', 'retried')",
            (kind, object_ids),
        )


async def get(conn: Conn, dead_letter_id: str, *, lock: bool = False) -> DeadLetter | None:
    return await fetch_one(
        conn,
        DeadLetter,
        f"SELECT {_COLUMNS} FROM dead_letters WHERE id = %s" + (" FOR UPDATE" if lock else ""),
        (dead_letter_id,),
    )


async def mark_retried(conn: Conn, dead_letter_id: str) -> None:
    await conn.execute("UPDATE dead_letters SET status = 'retried', updated = now() WHERE id = %s", (dead_letter_id,))


async def list_(
    conn: Conn, *, status: DeadLetterStatus | None, limit: int, starting_after: str | None
) -> Page[DeadLetter]:
    return await newest_first(
        conn, "dead_letters", _COLUMNS, limit=limit, starting_after=starting_after, equal={"status": status},
        row_factory=class_row(DeadLetter),
    )  # fmt: skip
