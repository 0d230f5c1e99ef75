"""SQL for checkout sessions."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from tender.domain.models import CheckoutSession, CheckoutStatus
from tender.store.db import Conn, Page, newest_first
from tender.store.rows import fetch_all, fetch_one

COLUMNS = (
    "id, merchant_id, amount, currency, reference, description, success_url, cancel_url, url, payment_method_types,"
    " status, payment_id, expires_at, created, updated, processor, processor_session_id,"
    " mode, customer_id, setup_future_usage, subscription_data, subscription_id"
)


async def insert(
    conn: Conn,
    *,
    id: str,
    merchant_id: str,
    amount: int,
    currency: str,
    reference: str,
    description: str | None,
    success_url: str,
    cancel_url: str,
    url: str,
    payment_method_types: list[str],
    expires_at: datetime,
    processor: str | None = None,
    next_run_at: datetime | None = None,
    mode: str = "payment",
    customer_id: str | None = None,
    setup_future_usage: str | None = None,
    subscription_data: dict[str, Any] | None = None,
) -> CheckoutSession | None:
    """Insert an open session, due to expire at `expires_at` (or first looked at `next_run_at`: a session
    hosted by `processor`); None if the merchant already has an open or complete session for this reference."""
    return await fetch_one(
        conn,
        CheckoutSession,
        "INSERT INTO checkout_sessions (id, merchant_id, amount, currency, reference, description, success_url,"
        " cancel_url, url, payment_method_types, expires_at, next_run_at, processor, mode, customer_id,"
        " setup_future_usage, subscription_data) VALUES (%(id)s,"
        " %(merchant_id)s, %(amount)s, %(currency)s, %(reference)s, %(description)s, %(success_url)s,"
        " %(cancel_url)s, %(url)s, %(payment_method_types)s, %(expires_at)s, %(next_run_at)s, %(processor)s,"
        " %(mode)s, %(customer_id)s, %(setup_future_usage)s, %(subscription_data)s)"
        f" ON CONFLICT (merchant_id, reference) WHERE status <> 'expired' DO NOTHING RETURNING {COLUMNS}",
        {
            "id": id,
            "merchant_id": merchant_id,
            "amount": amount,
            "currency": currency,
            "reference": reference,
            "description": description,
            "success_url": success_url,
            "cancel_url": cancel_url,
            "url": url,
            "payment_method_types": payment_method_types,
            "expires_at": expires_at,
            "next_run_at": next_run_at or expires_at,
            "processor": processor,
            "mode": mode,
            "customer_id": customer_id,
            "setup_future_usage": setup_future_usage,
            "subscription_data": Jsonb(subscription_data) if subscription_data is not None else None,
        },
    )


async def by_reference(conn: Conn, merchant_id: str, reference: str) -> CheckoutSession | None:
    return await fetch_one(
        conn,
        CheckoutSession,
        f"SELECT {COLUMNS} FROM checkout_sessions WHERE merchant_id = %s AND reference = %s AND status <> 'expired'",
        (merchant_id, reference),
    )


async def get(
    conn: Conn, session_id: str, merchant_id: str | None = None, *, lock: bool = False
) -> CheckoutSession | None:
    where = "id = %s" + (" AND merchant_id = %s" if merchant_id else "")
    params = (session_id, merchant_id) if merchant_id else (session_id,)
    return await fetch_one(
        conn,
        CheckoutSession,
        f"SELECT {COLUMNS} FROM checkout_sessions WHERE {where}" + (" FOR UPDATE" if lock else ""),
        params,
    )


async def list_(
    conn: Conn, merchant_id: str, *, limit: int, starting_after: str | None, status: CheckoutStatus | None
) -> Page[CheckoutSession]:
    return await newest_first(
        conn, "checkout_sessions", COLUMNS, limit=limit, starting_after=starting_after,
        equal={"merchant_id": merchant_id, "status": status}, row_factory=class_row(CheckoutSession),
    )  # fmt: skip


async def set_subscription(
    conn: Conn, session_id: str, *, customer_id: str, subscription_id: str, payment_id: str | None
) -> None:
    """A subscription session's customer (made on the page if it had none), the subscription the card started,
    and its first invoice's payment (None during a trial)."""
    await conn.execute(
        "UPDATE checkout_sessions SET customer_id = %s, subscription_id = %s, payment_id = %s, updated = now()"
        " WHERE id = %s",
        (customer_id, subscription_id, payment_id, session_id),
    )


async def adopt_payment(conn: Conn, session_id: str, payment_id: str) -> None:
    """A payment made for the session elsewhere (a subscription's first invoice's) counts as the session's:
    its attempts are counted, its success completes the session, and it shows `checkout_session`."""
    await conn.execute("UPDATE payments SET checkout_session_id = %s WHERE id = %s", (session_id, payment_id))


async def set_payment(conn: Conn, session_id: str, payment_id: str) -> None:
    await conn.execute(
        "UPDATE checkout_sessions SET payment_id = %s, updated = now() WHERE id = %s", (payment_id, session_id)
    )


async def finish(conn: Conn, ids: Sequence[str], status: CheckoutStatus) -> list[CheckoutSession]:
    """Open sessions among `ids` become `status` (complete or expired) and leave the expiry pump."""
    return await fetch_all(
        conn,
        CheckoutSession,
        "UPDATE checkout_sessions SET status = %s, next_run_at = NULL, lease_token = NULL, updated = now()"
        f" WHERE id = ANY(%s) AND status = 'open' RETURNING {COLUMNS}",
        (status, sorted(ids)),
    )


async def reschedule(conn: Conn, token: Any, ids: Sequence[str], seconds: float) -> None:
    if ids:
        await conn.execute(
            "UPDATE checkout_sessions SET next_run_at = now() + make_interval(secs => %s), lease_token = NULL"
            " WHERE id = ANY(%s) AND lease_token = %s",
            (seconds, list(ids), token),
        )


async def payment_count(conn: Conn, session_id: str) -> int:
    cur = await conn.execute("SELECT count(*) AS n FROM payments WHERE checkout_session_id = %s", (session_id,))
    row = await cur.fetchone()
    return int(row["n"]) if row else 0


async def record_registration(
    conn: Conn, session_id: str, processor_session_id: str, url: str, *, next_look_seconds: float
) -> CheckoutSession | None:
    """The processor's session id and page, written once (a second registration of the same session, after a
    retry, keeps the first), the registration's lease let go and the next look-up due; the session as it is."""
    await conn.execute(
        "UPDATE checkout_sessions SET processor_session_id = %s, url = %s, updated = now(), lease_token = NULL,"
        " next_run_at = CASE WHEN status = 'open' THEN now() + make_interval(secs => %s) END"
        " WHERE id = %s AND processor_session_id IS NULL",
        (processor_session_id, url, next_look_seconds, session_id),
    )
    return await get(conn, session_id)


async def take_registration(conn: Conn, session_id: str, token: Any, seconds: float) -> bool:
    """A lease on registering the session at its processor (the one caller that may call it now): False when
    another request or the pump holds one. It also keeps the pump away until it runs out."""
    cur = await conn.execute(
        "UPDATE checkout_sessions SET lease_token = %s, next_run_at = now() + make_interval(secs => %s)"
        " WHERE id = %s AND processor_session_id IS NULL AND status = 'open'"
        " AND (lease_token IS NULL OR next_run_at <= now()) RETURNING id",
        (token, seconds, session_id),
    )
    return await cur.fetchone() is not None


async def release_registration(conn: Conn, session_id: str, token: Any, seconds: float) -> None:
    """The registration failed (the processor did not answer): free for the next try, and the pump's in `seconds`."""
    await conn.execute(
        "UPDATE checkout_sessions SET lease_token = NULL, next_run_at = now() + make_interval(secs => %s)"
        " WHERE id = %s AND lease_token = %s",
        (seconds, session_id, token),
    )


async def by_processor_session(
    conn: Conn, processor: str, processor_session_id: str, *, lock: bool = False
) -> CheckoutSession | None:
    return await fetch_one(
        conn,
        CheckoutSession,
        f"SELECT {COLUMNS} FROM checkout_sessions WHERE processor = %s AND processor_session_id = %s"
        + (" FOR UPDATE" if lock else ""),
        (processor, processor_session_id),
    )


async def hosted_by_processor(conn: Conn, ids: Sequence[str]) -> set[str]:
    """Which of `ids` are hosted by a processor (their expiry is the processor's word, looked up)."""
    cur = await conn.execute(
        "SELECT id FROM checkout_sessions WHERE id = ANY(%s) AND processor IS NOT NULL", (list(ids),)
    )
    return {row["id"] for row in await cur.fetchall()}


async def schedule(conn: Conn, token: Any, due: dict[str, datetime]) -> None:
    """The next look at each session (under the pump's lease `token`), while it is open."""
    for session_id, when in due.items():
        await conn.execute(
            "UPDATE checkout_sessions SET next_run_at = %s, lease_token = NULL"
            " WHERE id = %s AND lease_token = %s AND status = 'open'",
            (when, session_id, token),
        )
