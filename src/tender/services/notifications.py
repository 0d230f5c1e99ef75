"""Inbound processor notifications: verified, stored for audit, applied at most once and in any order.

The processor's event id is the primary key of `processor_events`, so a repeated notification is a no-op.
What an outcome means comes from `domain.transitions.decide`, the same rule the worker uses, and it is written
by services/payment_transitions.py, the same code as the worker's; a notification that no longer applies (the
payment has moved on) is recorded as stale and changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, timedelta, tzinfo

from tender.errors import NotFound, NotificationRejected
from tender.processors.base import InvalidNotification, Processor, ProcessorResult
from tender.services import payment_transitions
from tender.services.validation import check_json
from tender.store import attempts as attempt_store
from tender.store import processor_events
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
        raise NotificationRejected(f"Notification rejected: {exc}") from None
    check_json(notification.payload, "notification")  # signed, yet PostgreSQL's jsonb cannot hold a NUL

    async with db.transaction() as conn:
        if not await processor_events.insert(
            conn, name, notification.event_id, notification.type, notification.payload
        ):
            return "duplicate"
        outcome = await _apply(conn, name, notification.reference, notification.result, business_tz, action_lookup)
        await processor_events.set_outcome(conn, name, notification.event_id, outcome)
    log.info("%s notification %s: %s", name, notification.event_id, outcome)
    return outcome


async def _apply(
    conn: Conn, name: str, reference: str, result: ProcessorResult, business_tz: tzinfo, action_lookup: timedelta
) -> str:
    attempt = await attempt_store.find(conn, reference)
    if attempt is None:
        return "unknown_reference"
    if attempt.processor != name:
        # Only the processor an attempt went to may speak for it: simulator instances share one signing secret,
        # and a payment that failed over has an attempt at each processor of its route.
        log.warning(
            "%s notification about attempt %s, which went to %s: not applied", name, reference, attempt.processor
        )
        return "wrong_processor"
    return await payment_transitions.apply_answer(conn, attempt, result, tz=business_tz, action_lookup=action_lookup)
