"""SQL of the dashboard's home pages: payments per day, open issues, and the operator's totals.

Payment ids are ULIDs, which start with their creation time, so "created since T" is also "id >= the smallest
id of T": the range rides the primary key or (merchant_id, id) index instead of scanning the merchant's
history.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from ulid import ULID

from tender.store.db import Conn
from tender.store.rows import fetch_all


def id_floor(prefix: str, when: datetime) -> str:
    """The smallest id of this kind made at or after `when`."""
    return f"{prefix}_{str(ULID.from_datetime(when))[:10]}{'0' * 16}"


@dataclass(frozen=True, slots=True)
class DayRow:
    day: date
    currency: str
    count: int
    approved: int  # succeeded or authorized (requires_capture)
    failed: int
    volume: int  # captured amount of the day's succeeded payments, minor units


_DAYS = """
    SELECT (created AT TIME ZONE %(tz)s)::date AS day, currency::text AS currency, count(*) AS count,
           count(*) FILTER (WHERE status IN ('succeeded', 'requires_capture')) AS approved,
           count(*) FILTER (WHERE status = 'failed') AS failed,
           coalesce(sum(amount_captured) FILTER (WHERE status = 'succeeded'), 0)::bigint AS volume
    FROM payments
    WHERE {scope} id >= %(floor)s AND created >= %(since)s AND created < %(until)s
    GROUP BY 1, 2
    ORDER BY 1, 2
"""


async def payments_per_day(
    conn: Conn, merchant_id: str | None, since: datetime, until: datetime, tz: str
) -> list[DayRow]:
    """Per business day (in `tz`) and currency of the payments created in [since, until): one merchant's, or
    every merchant's (None)."""
    scope = "merchant_id = %(merchant)s AND" if merchant_id is not None else ""
    params = {"merchant": merchant_id, "since": since, "until": until, "floor": id_floor("pay", since), "tz": tz}
    return await fetch_all(conn, DayRow, _DAYS.format(scope=scope), params)


@dataclass(frozen=True, slots=True)
class FailingEndpoint:
    id: str
    url: str
    enabled: bool
    disabled_reason: str | None
    failing_since: datetime | None


async def failing_endpoints(conn: Conn, merchant_id: str) -> list[FailingEndpoint]:
    """The merchant's webhook endpoints failing now, or disabled by Tender for failing."""
    return await fetch_all(
        conn,
        FailingEndpoint,
        """
        SELECT id, url, enabled, disabled_reason, failing_since FROM webhook_endpoints
        WHERE merchant_id = %s AND (failing_since IS NOT NULL OR disabled_reason = 'failing')
        ORDER BY failing_since NULLS LAST, id
        LIMIT 50
        """,
        (merchant_id,),
    )


@dataclass(frozen=True, slots=True)
class OpenDeadLetter:
    id: str
    kind: str
    object_id: str
    operation: str
    last_error: str | None
    created: datetime


# A dead letter names its object by kind and id; the object's table says whose it is.
_OWNER = """(
       (d.kind = 'payment' AND EXISTS (SELECT 1 FROM payments o WHERE o.id = d.object_id AND o.merchant_id = %(m)s))
    OR (d.kind = 'refund' AND EXISTS (SELECT 1 FROM refunds o WHERE o.id = d.object_id AND o.merchant_id = %(m)s))
    OR (d.kind = 'checkout session'
        AND EXISTS (SELECT 1 FROM checkout_sessions o WHERE o.id = d.object_id AND o.merchant_id = %(m)s))
    OR (d.kind = 'webhook delivery'
        AND EXISTS (SELECT 1 FROM webhook_deliveries o WHERE o.id = d.object_id AND o.merchant_id = %(m)s))
    OR (d.kind = 'subscription'
        AND EXISTS (SELECT 1 FROM subscriptions o WHERE o.id = d.object_id AND o.merchant_id = %(m)s))
)"""


async def open_dead_letters(conn: Conn, merchant_id: str, limit: int = 50) -> list[OpenDeadLetter]:
    """Open dead letters of the merchant's objects, newest first."""
    return await fetch_all(
        conn,
        OpenDeadLetter,
        f"""
        SELECT d.id, d.kind, d.object_id, d.operation, d.last_error, d.created FROM dead_letters d
        WHERE d.status = 'open' AND {_OWNER}
        ORDER BY d.id DESC LIMIT %(limit)s
        """,
        {"m": merchant_id, "limit": limit},
    )


@dataclass(frozen=True, slots=True)
class MerchantChoice:
    id: str
    name: str


async def merchants(conn: Conn, limit: int) -> list[MerchantChoice]:
    return await fetch_all(conn, MerchantChoice, "SELECT id, name FROM merchants ORDER BY name, id LIMIT %s", (limit,))


async def count_open_dead_letters(conn: Conn) -> int:
    cur = await conn.execute("SELECT count(*) AS n FROM dead_letters WHERE status = 'open'")
    row = await cur.fetchone()
    return int(row["n"]) if row else 0
