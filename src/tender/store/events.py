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
# One statement for the whole batch. The sequence continues the object's own numbering (from its events, or
# where retention left it: event_sequences); several events of one object in the batch are numbered in the
# order given. The caller holds the object's lock.
_INSERT = """
INSERT INTO events (id, merchant_id, type, object_id, data, sequence)
SELECT e.id, e.merchant_id, e.type, e.object_id, e.data,
       greatest(
           (SELECT max(x.sequence) FROM events x WHERE x.object_id = e.object_id),
           (SELECT s.last FROM event_sequences s WHERE s.object_id = e.object_id),
           0)
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


async def get(conn: Conn, merchant_id: str, event_id: str, *, share: bool = False) -> Event | None:
    """`share`: hold the row (FOR SHARE) for the transaction, so that retention cannot delete it meanwhile."""
    query = f"SELECT {EVENT_COLUMNS} FROM events WHERE id = %s AND merchant_id = %s" + (" FOR SHARE" if share else "")
    return await fetch_one(conn, Event, query, (event_id, merchant_id))


# Retention: events made before the floor (their ids below it: ids sort by time), oldest first, with their
# deliveries (and, by cascade, those's attempts); each object's last sequence purged is remembered in
# event_sequences, where its next event's numbering goes on from. Kept: an event with a delivery still pending,
# or dead-lettered and open (an operator may retry it); a row another transaction holds (a redelivery: SKIP
# LOCKED). The statement's writes commit together, so an event inserted meanwhile sees either the old events or
# the remembered sequence, never neither.
_DELETE_OLD = """
WITH old AS (
    SELECT e.id, e.object_id, e.sequence FROM events e
    WHERE e.id < %(floor)s
      AND NOT EXISTS (
          SELECT 1 FROM webhook_deliveries d
          WHERE d.event_id = e.id
            AND (d.status = 'pending' OR EXISTS (
                SELECT 1 FROM dead_letters l
                WHERE l.kind = 'webhook_delivery' AND l.object_id = d.id AND l.status = 'open')))
    ORDER BY e.id LIMIT %(limit)s
    FOR UPDATE OF e SKIP LOCKED
), deliveries AS (
    DELETE FROM webhook_deliveries d USING old WHERE d.event_id = old.id
), remembered AS (
    INSERT INTO event_sequences (object_id, last)
    SELECT object_id, max(sequence) FROM old GROUP BY object_id
    ON CONFLICT (object_id) DO UPDATE SET last = greatest(event_sequences.last, excluded.last)
)
DELETE FROM events e USING old WHERE e.id = old.id
"""


async def delete_older_than(conn: Conn, floor_id: str, limit: int) -> int:
    """Up to `limit` events older than `floor_id` (see _DELETE_OLD for what stays); returns how many went."""
    cur = await conn.execute(_DELETE_OLD, {"floor": floor_id, "limit": limit})
    return cur.rowcount


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
