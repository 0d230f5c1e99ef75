"""Housekeeping the worker does now and then."""

from __future__ import annotations

import logging

from tender.store import idempotency
from tender.store.db import Database

log = logging.getLogger(__name__)

# API.md promises at least 24 hours; a second day covers clients retrying across a long outage.
IDEMPOTENCY_KEY_HOURS = 48


async def purge_idempotency_keys(db: Database, *, hours: int = IDEMPOTENCY_KEY_HOURS) -> int:
    async with db.connection() as conn:
        removed = await idempotency.delete_older_than(conn, hours)
    if removed:
        log.info("purged %d idempotency keys older than %d h", removed, hours)
    return removed
