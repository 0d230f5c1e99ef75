"""SQL for operator events: what an operator should know about (a circuit opened, a processor paused, a
reconciliation run), kept apart from merchants' events, which fan out to their webhooks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from tender.domain.ids import EVENT, new_id
from tender.domain.operator_events import OperatorEvent
from tender.store.db import Conn, Page, newest_first

_COLUMNS = "id, type, data, created"


async def insert(conn: Conn, type: str, data: Mapping[str, Any]) -> str:
    """Record one event in the caller's transaction; returns its id (`evt_...`)."""
    event_id = new_id(EVENT)
    await conn.execute(
        "INSERT INTO operator_events (id, type, data) VALUES (%s, %s, %s)", (event_id, type, Jsonb(dict(data)))
    )
    return event_id


async def list_(conn: Conn, *, type: str | None, limit: int, starting_after: str | None) -> Page[OperatorEvent]:
    return await newest_first(
        conn, "operator_events", _COLUMNS, limit=limit, starting_after=starting_after, equal={"type": type},
        row_factory=class_row(OperatorEvent),
    )  # fmt: skip
