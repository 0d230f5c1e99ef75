"""SQL for inbound processor notifications: each stored once, by the processor's event id, for audit."""

from __future__ import annotations

from typing import Any

from psycopg.types.json import Jsonb

from tender.domain.models import Attempt
from tender.store.db import Conn


async def insert(conn: Conn, processor: str, event_id: str, type: str, payload: dict[str, Any]) -> bool:
    """Store a notification; False if this event id was stored before (a repeat: apply nothing)."""
    cur = await conn.execute(
        "INSERT INTO processor_events (processor, event_id, type, payload) VALUES (%s, %s, %s, %s)"
        " ON CONFLICT DO NOTHING RETURNING 1",
        (processor, event_id, type, Jsonb(payload)),
    )
    return await cur.fetchone() is not None


async def set_outcome(conn: Conn, processor: str, event_id: str, outcome: str) -> None:
    await conn.execute(
        "UPDATE processor_events SET outcome = %s WHERE processor = %s AND event_id = %s",
        (outcome, processor, event_id),
    )


async def find_attempt(conn: Conn, processor: str, reference: str) -> Attempt | None:
    """The authorize attempt on which a processor's own id for it (Stripe's `pi_...`) was recorded: how an
    inbound event that does not name Tender's attempt finds it."""
    cur = await conn.execute(
        "SELECT id, payment_id, operation, processor, status, amount, calls, maybe_sent, processor_reference"
        " FROM payment_attempts WHERE processor = %s AND processor_reference = %s AND operation = 'authorize'"
        " ORDER BY id DESC LIMIT 1",
        (processor, reference),
    )
    row = await cur.fetchone()
    return Attempt(**row) if row else None
