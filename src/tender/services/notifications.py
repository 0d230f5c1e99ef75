"""Inbound processor notifications: verified, stored for audit, applied at most once and in any order.

The processor's event id is the primary key of `processor_events`, so a repeated notification is a no-op.
What an outcome means comes from `domain.transitions.decide`, the same rule the worker uses; a notification that
no longer applies (the payment has moved on) is recorded as stale and changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta, tzinfo

from psycopg.types.json import Jsonb

from tender.domain.payments import FINAL_STATUSES
from tender.domain.transitions import DEFINITIVE, decide
from tender.errors import InvalidRequest, NotFound
from tender.processors.base import InvalidNotification, Processor, ProcessorResult
from tender.services import events, payables
from tender.services.validation import check_json
from tender.store import attempts as attempt_store
from tender.store import card_funding, dead_letters
from tender.store import payments as store
from tender.store.db import Conn, Database

log = logging.getLogger(__name__)


async def receive(
    db: Database,
    processors: Mapping[str, Processor],
    name: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    business_tz: tzinfo = UTC,
    action_lookup: timedelta,
) -> str:
    """Verify and apply one notification; returns what happened: applied, stale, duplicate, ignored.
    A payment it leaves waiting for the shopper is looked up after `action_lookup`
    (TENDER_WORKER_ACTION_LOOKUP_SECONDS) unless another notification comes first."""
    processor = processors.get(name)
    if processor is None:
        raise NotFound("No such processor.", param="processor")
    try:
        notification = processor.parse_notification(headers, body)
    except InvalidNotification as exc:
        raise InvalidRequest(f"Notification rejected: {exc}", code="invalid_signature") from None
    check_json(notification.payload, "notification")  # signed, yet PostgreSQL's jsonb cannot hold a NUL

    async with db.transaction() as conn:
        cur = await conn.execute(
            "INSERT INTO processor_events (processor, event_id, type, payload) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT DO NOTHING RETURNING 1",
            (name, notification.event_id, notification.type, Jsonb(notification.payload)),
        )
        if await cur.fetchone() is None:
            return "duplicate"
        outcome = await _apply(conn, notification.reference, notification.result, business_tz, action_lookup)
        await conn.execute(
            "UPDATE processor_events SET outcome = %s WHERE processor = %s AND event_id = %s",
            (outcome, name, notification.event_id),
        )
    log.info("%s notification %s: %s", name, notification.event_id, outcome)
    return outcome


async def _apply(
    conn: Conn, reference: str, result: ProcessorResult, business_tz: tzinfo, action_lookup: timedelta
) -> str:
    attempt = await attempt_store.find(conn, reference)
    if attempt is None:
        return "unknown_reference"
    if result.outcome not in DEFINITIVE:
        return "ignored"
    payment = await store.lock_payment(conn, attempt.payment_id)
    if payment is None:
        return "unknown_reference"
    change = decide(payment, attempt, result, next_run_at=datetime.now(UTC) + action_lookup)
    if change is None:
        return "stale"
    now = datetime.now(UTC)
    change = replace(change, updated=now)
    if change.next_run_at is None and change.status not in FINAL_STATUSES:
        # Authorized for a later capture: the pump takes it from here at once (a capture or cancel the
        # merchant asked for meanwhile, then the capture window). No non-final status goes unscheduled.
        change = replace(change, next_run_at=now)
    if not await store.apply_change(conn, change):
        return "stale"
    if change.card_funding:  # before events and payables: both must see the processor's funding
        await card_funding.record(conn, {payment.id: change.card_funding})
    if change.moved:
        await events.record_payment_changes(conn, [payment.id])
    if change.status == "succeeded" and change.moved:
        await payables.record_captures(conn, [payment.id], tz=business_tz, now=now)
    await attempt_store.settle(conn, attempt)
    if change.expected_status == "processing" and change.status != "processing" and payment.card_id:
        await store.erase_cvcs(conn, [payment.card_id])
    await dead_letters.resolve(conn, "payment", [payment.id])
    return "applied"
