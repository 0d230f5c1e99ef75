"""Housekeeping the worker does now and then."""

from __future__ import annotations

import logging

from tender.store import idempotency, webhooks
from tender.store.db import Database

log = logging.getLogger(__name__)

# API.md promises at least 24 hours; a second day covers clients retrying across a long outage.
IDEMPOTENCY_KEY_HOURS = 48
# Delivery attempts are for debugging an endpoint; a month is plenty. The delivery rows (one per event and
# endpoint) stay, with their last status code and error.
WEBHOOK_ATTEMPT_DAYS = 30


async def purge_idempotency_keys(db: Database, *, hours: int = IDEMPOTENCY_KEY_HOURS) -> int:
    async with db.connection() as conn:
        removed = await idempotency.delete_older_than(conn, hours)
    if removed:
        log.info("purged %d idempotency keys older than %d h", removed, hours)
    return removed


async def purge_webhook_attempts(db: Database, *, days: int = WEBHOOK_ATTEMPT_DAYS) -> int:
    async with db.connection() as conn:
        removed = await webhooks.delete_attempts_older_than(conn, days)
    if removed:
        log.info("purged %d webhook attempts older than %d days", removed, days)
    return removed
