"""SQL for the event outbox: events are written in the transaction of the change they report, and so are
their webhook deliveries, one per enabled endpoint of the merchant that listens to the type."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from psycopg.rows import DictRow, class_row
from psycopg.types.json import Jsonb

from tender.domain.ids import EVENT, new_id
from tender.domain.models import Event, Payment
from tender.store import payments as payment_store
from tender.store import webhooks
from tender.store.db import Conn, Page, newest_first
from tender.store.rows import fetch_all, fetch_one

EVENT_COLUMNS = "id, merchant_id, type, object_id, sequence, data, created"

# unnest's arrays go in binary (%b): cheaper to dump than text arrays (store/payments.py, issue 16).
# One statement for the whole batch. The sequence continues the object's own numbering; several events of
# one object in the batch are numbered in the order given. The caller holds the object's lock.
_INSERT = """
INSERT INTO events (id, merchant_id, type, object_id, data, sequence)
SELECT e.id, e.merchant_id, e.type, e.object_id, e.data,
       coalesce((SELECT max(x.sequence) FROM events x WHERE x.object_id = e.object_id), 0)
       + row_number() OVER (PARTITION BY e.object_id ORDER BY e.ord)
FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::jsonb[])
     WITH ORDINALITY AS e (id, merchant_id, type, object_id, data, ord)
"""


async def payments_with_endpoints(
    conn: Conn, payment_ids: Sequence[str], merchant_ids: Iterable[str]
) -> tuple[list[Payment], list[DictRow]]:
    """The payments as they are now, and the enabled webhook endpoints of `merchant_ids` (for `record`): both
    reads are sent before either is fetched, so in the caller's pipeline they share one round trip (issue 16)."""
    payments = await conn.execute(payment_store.SELECT_BY_IDS, (list(payment_ids),))
    endpoints = await conn.execute(webhooks.ENABLED_ENDPOINTS, (sorted(set(merchant_ids)),))
    return [payment_store.payment_of(row) for row in await payments.fetchall()], await endpoints.fetchall()


async def record(
    conn: Conn,
    events: Sequence[tuple[str, str, str, dict[str, Any]]],
    endpoints: Sequence[Mapping[str, Any]] | None = None,
) -> list[str]:
    """Insert (merchant_id, type, object_id, object) events and their deliveries; returns the event ids.
    `endpoints`: the enabled webhook endpoints of the events' merchants, if already read in this transaction."""
    if not events:
        return []
    ids = [new_id(EVENT) for _ in events]
    merchants, types, objects, data = [], [], [], []
    for merchant_id, type_, object_id, obj in events:
        merchants.append(merchant_id)
        types.append(type_)
        objects.append(object_id)
        data.append(Jsonb({"object": obj}))
    await conn.execute(_INSERT, (ids, merchants, types, objects, data))
    await webhooks.fan_out(conn, list(zip(ids, merchants, types, strict=True)), endpoints)
    return ids


async def get(conn: Conn, merchant_id: str, event_id: str) -> Event | None:
    return await fetch_one(
        conn, Event, f"SELECT {EVENT_COLUMNS} FROM events WHERE id = %s AND merchant_id = %s", (event_id, merchant_id)
    )


async def get_many(conn: Conn, ids: Sequence[str]) -> dict[str, Event]:
    found = await fetch_all(conn, Event, f"SELECT {EVENT_COLUMNS} FROM events WHERE id = ANY(%s)", (list(ids),))
    return {event.id: event for event in found}


async def list_(
    conn: Conn,
    merchant_id: str,
    *,
    limit: int,
    starting_after: str | None = None,
    types: Sequence[str] = (),
    type_prefix: str | None = None,
    object_id: str | None = None,
    created_gte: datetime | None = None,
) -> Page[Event]:
    conditions: list[tuple[str, Any]] = []
    if types:
        conditions.append(("type = ANY(%s)", list(types)))
    if type_prefix is not None:
        conditions.append(("starts_with(type, %s)", type_prefix))
    if created_gte is not None:
        conditions.append(("created >= %s", created_gte))
    return await newest_first(
        conn, "events", EVENT_COLUMNS, limit=limit, starting_after=starting_after,
        equal={"merchant_id": merchant_id, "object_id": object_id}, conditions=tuple(conditions),
        row_factory=class_row(Event),
    )  # fmt: skip
