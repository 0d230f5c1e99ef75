"""Housekeeping the worker does now and then."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from tender.domain.ids import EVENT, floor_id
from tender.store import events, idempotency, stranded, webhooks
from tender.store import payments as payment_store
from tender.store.db import Database

log = logging.getLogger(__name__)


async def purge_idempotency_keys(db: Database, *, hours: int) -> int:
    """Idempotency-Keys older than `hours` (TENDER_IDEMPOTENCY_KEY_HOURS, 48: API.md promises at least 24 hours,
    a second day covers clients retrying across a long outage)."""
    async with db.connection() as conn:
        removed = await idempotency.delete_older_than(conn, hours)
    if removed:
        log.info("purged %d idempotency keys older than %d h", removed, hours)
    return removed


async def purge_webhook_attempts(db: Database, *, days: int) -> int:
    """Webhook delivery attempts older than `days` (TENDER_WEBHOOK_ATTEMPT_DAYS, 30: they are for debugging an
    endpoint; the delivery rows, one per event and endpoint, stay with their last status code and error)."""
    async with db.connection() as conn:
        removed = await webhooks.delete_attempts_older_than(conn, days)
    if removed:
        log.info("purged %d webhook attempts older than %d days", removed, days)
    return removed


async def purge_events(
    db: Database, *, days: int, batch: int = 5_000, max_batches: int = 200, now: datetime | None = None
) -> int:
    """Events older than `days` (TENDER_EVENT_RETENTION_DAYS, 90; Stripe keeps 30) with their finished webhook
    deliveries and attempts: the fastest-growing tables after the payments themselves (docs/scaling.md). An event
    whose delivery is pending or dead-lettered stays; an object's next event still continues its sequence
    (store/events.py). In batches, each its own short transaction, up to `max_batches` a round:
    a backlog (retention just turned on) goes over several rounds, never in one long transaction."""
    floor = floor_id(EVENT, (now or datetime.now(UTC)) - timedelta(days=days))
    removed = 0
    for _ in range(max_batches):
        async with db.transaction() as conn:
            gone = await events.delete_older_than(conn, floor, batch)
        removed += gone
        if gone < batch:
            break
    if removed:
        log.info("purged %d events older than %d days, with their webhook deliveries", removed, days)
    return removed


async def reschedule_stranded(db: Database) -> dict[str, int]:
    """The invariant "no non-final row without a next step", checked in the database: stranded rows (a bug, or
    a hand edit) are given one and named in the log. Returns how many per table (zero when all is well)."""
    found: dict[str, int] = {}
    async with db.transaction() as conn:
        for rows in stranded.TABLES:
            ids = await stranded.reschedule(conn, rows)
            found[rows.table] = len(ids)
            if ids:
                log.warning(
                    "%d %s had no next step in a non-final status; rescheduled: %s%s",
                    len(ids),
                    rows.table,
                    ", ".join(ids[:10]),
                    " ..." if len(ids) > 10 else "",
                )
    return found


async def erase_expired_cvcs(db: Database, *, hours: float) -> int:
    """PCI DSS 3.3.1: a CVC is kept only until authorization. The pump erases it when authorization ends; a
    payment still processing after `hours` (its authorization a dead letter: the processor unreachable) loses
    it here. It is then only looked up, never sent again: if the processor never saw it, it fails."""
    async with db.transaction() as conn:
        erased = await payment_store.erase_expired_cvcs(conn, timedelta(hours=hours))
    if erased:
        log.warning(
            "erased the CVC of %d payment(s) still processing after %g h; each is looked up once more and fails"
            " (processor_unreachable) if the processor never saw it",
            len(erased),
            hours,
        )
    return len(erased)
