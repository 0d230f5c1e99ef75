"""SQL for the event outbox: events are written in the transaction of the change they report."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg.types.json import Jsonb

from tender.domain.ids import EVENT, new_id
from tender.store.db import Conn


async def record(conn: Conn, events: Sequence[tuple[str, str, str, dict[str, Any]]]) -> list[str]:
    """Insert (merchant_id, type, object_id, object) events; returns their ids."""
    if not events:
        return []
    ids = [new_id(EVENT) for _ in events]
    async with conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO events (id, merchant_id, type, object_id, data) VALUES (%s, %s, %s, %s, %s)",
            [
                (eid, merchant_id, type_, object_id, Jsonb({"object": obj}))
                for eid, (merchant_id, type_, object_id, obj) in zip(ids, events, strict=True)
            ],
        )
    return ids
