"""Dead letters: work that exhausted its automatic retries, for an operator to inspect and retry."""

from __future__ import annotations

from typing import Any

from tender.errors import InvalidRequest, NotFound
from tender.services.objects import iso
from tender.store import dead_letters as store
from tender.store import payments as payment_store
from tender.store import refunds as refund_store
from tender.store import webhooks as webhook_store
from tender.store.db import Database

STATUSES = ("open", "retried", "resolved")


def dead_letter_object(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "object": "dead_letter",
        "kind": row["kind"],
        "object_id": row["object_id"],
        "operation": row["operation"],
        "status": row["status"],
        "tries": row["tries"],
        "last_error": row["last_error"],
        "history": row["history"],
        "created": iso(row["created"]),
        "updated": iso(row["updated"]),
    }


async def list_dead_letters(
    db: Database, *, status: str | None = None, limit: int = 10, starting_after: str | None = None
) -> tuple[list[dict[str, Any]], bool]:
    if status is not None and status not in STATUSES:
        raise InvalidRequest("status: must be one of " + ", ".join(STATUSES), param="status")
    async with db.connection() as conn:
        page = await store.list_(conn, status=status, limit=limit, starting_after=starting_after)
    return [dead_letter_object(r) for r in page.rows], page.has_more


async def retry(db: Database, dead_letter_id: str) -> dict[str, Any]:
    """Give the work a fresh set of tries, due at once."""
    async with db.transaction() as conn:
        row = await store.get(conn, dead_letter_id, lock=True)
        if row is None:
            raise NotFound("No such dead letter.", param="id")
        if row["status"] == "resolved":
            raise InvalidRequest("This dead letter is resolved: the work got done.", code="dead_letter_resolved")
        if row["kind"] == "payment":
            await payment_store.schedule_now(conn, row["object_id"], reset_tries=True)
        elif row["kind"] == "refund":
            await refund_store.schedule_now(conn, row["object_id"])
        elif row["kind"] == "webhook_delivery":
            await webhook_store.schedule_now(conn, row["object_id"])
        else:
            raise InvalidRequest(f"Cannot retry work of kind {row['kind']!r} yet.", code="dead_letter_unsupported")
        await store.mark_retried(conn, dead_letter_id)
        row = await store.get(conn, dead_letter_id)
    assert row is not None
    return dead_letter_object(row)
