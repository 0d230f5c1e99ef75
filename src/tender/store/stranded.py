"""The house rule "every non-final state has a scheduled next step", as SQL over every table of due rows.

Each pump (payments, refunds, webhook deliveries, checkout sessions, subscriptions) is driven by `next_run_at`; a
row in a non-final status without one would never be looked at again. No code path should leave one (the pumps check
their own writes), so finding one means a bug or a hand edit: it is given a next step, and said loudly.
Payables and settlements have no such state: the settlement pump finds due payables by their payment date.
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import sql

from tender.store import notifications
from tender.store.db import Conn


@dataclass(frozen=True, slots=True)
class DueRows:
    table: str
    waiting: str  # SQL: the non-final statuses of this table
    due: str  # SQL: when a stranded row falls due


TABLES = (
    DueRows("payments", "status IN ('processing', 'requires_action', 'requires_capture')", "now()"),
    DueRows("refunds", "status = 'pending'", "now()"),
    DueRows("webhook_deliveries", "status = 'pending'", "now()"),
    # Due at its expiry: the expiry pump expires it then (or waits on a payment in progress).
    DueRows("checkout_sessions", "status = 'open'", "expires_at"),
    # Live subscriptions on the wall clock (those on a test clock run only when their clock is advanced).
    DueRows("subscriptions", "status IN ('trialing', 'active', 'past_due') AND test_clock_id IS NULL", "now()"),
)


async def reschedule(conn: Conn, rows: DueRows) -> list[str]:
    """Give every stranded row of `rows.table` its next step; returns their ids."""
    query = sql.SQL(
        "UPDATE {table} SET next_run_at = {due}, lease_token = NULL WHERE {waiting} AND next_run_at IS NULL"
        " RETURNING id"
    ).format(table=sql.Identifier(rows.table), due=sql.SQL(rows.due), waiting=sql.SQL(rows.waiting))
    cur = await conn.execute(query)
    ids = [row["id"] for row in await cur.fetchall()]
    if ids:
        await notifications.announce_work(conn, rows.table)
    return ids
