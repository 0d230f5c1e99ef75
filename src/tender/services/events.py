"""Events as merchants read them (`/v1/events`) and redeliver them.

An event is written by the service whose change it reports, in that change's transaction (see
`store.events.record`); this module only reads them. `sequence` numbers the events of one object
1, 2, 3... in the order they happened: a receiver orders by it, and deduplicates by the event id, which
is also the `webhook-id` of every delivery and every retry of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import orjson
from pydantic import BaseModel, ConfigDict, Field

from tender.domain.ids import MAX_ID_LENGTH
from tender.domain.models import DeliveryReport, Event, Payment
from tender.domain.webhooks import EVENT_TYPES, subscribes
from tender.errors import InvalidRequest, NoSuchObject, NotFound, NoWebhookEndpoint
from tender.services import checkout
from tender.services.objects import event_object, payment_object
from tender.services.webhook_endpoints import with_attempts
from tender.store import events as store
from tender.store import webhooks as webhook_store
from tender.store.db import Conn, Database, Page


async def record_payment_changes(conn: Conn, payments: Sequence[Payment]) -> None:
    """What a status change implies beyond the payment's row, in its transaction: a `payment.<status>` event
    per payment, carrying the payment as it is now (read again: `payments` are as they were before the change),
    and the completion of a checkout session it paid. The caller holds the payments' row locks (its UPDATE took
    them)."""
    if payments:
        current, endpoints = await store.payments_with_endpoints(
            conn, [p.id for p in payments], {p.merchant_id for p in payments}
        )
        changed = sorted(current, key=lambda p: p.id)
        await store.record(
            conn, [(p.merchant_id, f"payment.{p.status}", p.id, payment_object(p)) for p in changed], endpoints
        )
        await checkout.on_payment_changes(conn, changed)


def event_body(e: Event) -> bytes:
    """The bytes a webhook delivery POSTs (and signs): the same for every retry of the event."""
    return orjson.dumps(event_object(e))


async def get(db: Database, merchant_id: str, event_id: str) -> Event:
    async with db.connection() as conn:
        return await _get(conn, merchant_id, event_id)


async def _get(conn: Conn, merchant_id: str, event_id: str, *, share: bool = False) -> Event:
    event = await store.get(conn, merchant_id, event_id, share=share)
    if event is None:
        raise NotFound("No such event.", param="id")
    return event


def _type_filter(value: str | None) -> tuple[list[str], str | None]:
    """`type=payment.succeeded`, `type=payment.*` or a comma-separated list of exact types."""
    if value is None:
        return [], None
    if value.endswith(".*") and value.count("*") == 1:
        prefix = value[:-1]
        if not any(t.startswith(prefix) for t in EVENT_TYPES):
            raise InvalidRequest("type: no event type starts with this prefix", param="type")
        return [], prefix
    types = [t.strip() for t in value.split(",") if t.strip()]
    for t in types:
        if t not in EVENT_TYPES:
            raise InvalidRequest("type: unknown event type", param="type")
    return types, None


async def list_(
    db: Database,
    merchant_id: str,
    *,
    limit: int,
    starting_after: str | None,
    type: str | None,
    object_id: str | None,
) -> Page[Event]:
    types, prefix = _type_filter(type)
    async with db.connection() as conn:
        return await store.list_(
            conn,
            merchant_id,
            limit=limit,
            starting_after=starting_after,
            types=types,
            type_prefix=prefix,
            object_id=object_id,
        )


class Redeliver(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    # One endpoint; default: every enabled endpoint listening to the type.
    endpoint: str | None = Field(default=None, max_length=MAX_ID_LENGTH, description="A webhook endpoint id.")


async def redeliver(conn: Conn, merchant_id: str, event_id: str, request: Redeliver) -> list[DeliveryReport]:
    """Send the event again, now, with a fresh retry window; returns the deliveries it will make. The event is
    held for the transaction: retention (services/maintenance.py) skips it, or has deleted it first (404)."""
    event = await _get(conn, merchant_id, event_id, share=True)
    if request.endpoint is not None:
        endpoint = await webhook_store.get_endpoint(conn, merchant_id, request.endpoint)
        if endpoint is None:
            raise NoSuchObject("endpoint: no such webhook endpoint", param="endpoint")
        if not endpoint.enabled:
            raise InvalidRequest("endpoint: the webhook endpoint is disabled", param="endpoint")
        targets = [endpoint.id]
    else:
        endpoints = (await webhook_store.list_endpoints(conn, merchant_id, limit=1000, starting_after=None)).rows
        targets = [e.id for e in endpoints if e.enabled and subscribes(e.events, event.type)]
        if not targets:
            raise NoWebhookEndpoint(
                f"No enabled webhook endpoint listens to {event.type}; name one in `endpoint`.", param="endpoint"
            )
    deliveries = await webhook_store.redeliver(conn, event_id, targets)
    return await with_attempts(conn, [replace(d, event_type=event.type) for d in deliveries])
