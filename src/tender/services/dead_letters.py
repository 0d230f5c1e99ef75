"""Dead letters: work that exhausted its automatic retries, for an operator to inspect and retry."""

from __future__ import annotations

import logging
from typing import Any

from tender.domain.ids import DEAD_LETTER, new_id
from tender.domain.models import DeadLetterKind, DeadLetterStatus
from tender.errors import DeadLetterResolved, DeadLetterUnsupported, InvalidRequest, NotFound
from tender.services.objects import dead_letter_object
from tender.store import dead_letters as store
from tender.store import payments as payment_store
from tender.store import refunds as refund_store
from tender.store import webhooks as webhook_store
from tender.store.db import Conn, Database

log = logging.getLogger(__name__)

STATUSES = tuple(DeadLetterStatus)


async def open_for(
    conn: Conn,
    kind: DeadLetterKind,
    object_id: str,
    operation: str,
    *,
    tries: int,
    last_error: str | None,
    history: list[dict[str, Any]],
    processor: str | None = None,
) -> bool:
    """Work the retry policy gave up on (domain/retry.py), for an operator: at most one open dead letter per
    work and operation, in the transaction that writes the work's last try; `processor`: where the work was
    (payments, refunds). True if opened now."""
    opened = await store.open_one(
        conn,
        id=new_id(DEAD_LETTER),
        kind=kind,
        object_id=object_id,
        operation=operation,
        tries=tries,
        last_error=last_error,
        history=history,
        processor=processor,
    )
    if opened:
        log.warning(
            "%s %s: %s%s out of retries after %d tries (%s); dead letter opened",
            kind,
            object_id,
            operation,
            f" at {processor}" if processor else "",
            tries,
            last_error,
        )
    return opened


async def list_dead_letters(
    db: Database, *, status: str | None = None, limit: int = 10, starting_after: str | None = None
) -> tuple[list[dict[str, Any]], bool]:
    """The dead letters' objects (for the API and the CLI) and whether more follow."""
    try:
        wanted = DeadLetterStatus(status) if status is not None else None
    except ValueError:
        raise InvalidRequest("status: must be one of " + ", ".join(STATUSES), param="status") from None
    async with db.connection() as conn:
        page = await store.list_(conn, status=wanted, limit=limit, starting_after=starting_after)
    return [dead_letter_object(d) for d in page.rows], page.has_more


async def retry(db: Database, dead_letter_id: str) -> dict[str, Any]:
    """Give the work a fresh set of tries, due at once."""
    async with db.transaction() as conn:
        letter = await store.get(conn, dead_letter_id, lock=True)
        if letter is None:
            raise NotFound("No such dead letter.", param="id")
        if letter.status is DeadLetterStatus.RESOLVED:
            raise DeadLetterResolved("This dead letter is resolved: the work got done.")
        if letter.kind == DeadLetterKind.PAYMENT:
            await payment_store.schedule_now(conn, letter.object_id, reset_tries=True)
        elif letter.kind == DeadLetterKind.REFUND:
            await refund_store.schedule_now(conn, letter.object_id)
        elif letter.kind == DeadLetterKind.WEBHOOK_DELIVERY:
            await webhook_store.schedule_now(conn, letter.object_id)
        else:
            raise DeadLetterUnsupported(f"Cannot retry work of kind {letter.kind!r} yet.")
        await store.mark_retried(conn, dead_letter_id)
        letter = await store.get(conn, dead_letter_id)
    assert letter is not None
    return dead_letter_object(letter)
