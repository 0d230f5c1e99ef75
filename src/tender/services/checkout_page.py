"""The hosted checkout page's units of work (web/pages.py): what a page shows, and paying from its forms.

A page reads the session, and what it shows with it, through `view` (one connection); a payment from the
page's forms is `pay`'s transaction, in which checkout.pay locks the session. The page itself holds no
connection.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, tzinfo
from typing import Any

from tender.domain.models import CheckoutSession, Payment
from tender.errors import NotFound
from tender.services import checkout, velocity
from tender.services.checkout import SessionClosed
from tender.store import merchants as merchant_store
from tender.store import payments as payment_store
from tender.store.db import Conn, Database
from tender.vault import Vault


@dataclass(frozen=True, slots=True)
class SessionView:
    """A session as a page shows it: its current payment and its merchant's name, where they were asked for."""

    session: CheckoutSession
    payment: Payment | None = None
    merchant_name: str | None = None  # None: not asked for, or the merchant is gone


async def view(db: Database, session_id: str, *, payment: bool = False, merchant: bool = False) -> SessionView | None:
    """The session (None when there is none), with its payment and its merchant's name when asked for."""
    async with db.connection() as conn:
        session = await _session_or_none(conn, session_id)
        if session is None:
            return None
        name = await _merchant_name(conn, session) if merchant else None
        current = await _payment(conn, session) if payment else None
    return SessionView(session, current, name)


async def pay(
    db: Database,
    vault: Vault,
    session_id: str,
    method: dict[str, Any],
    *,
    processor: str,
    max_payments: int,
    guard: velocity.Guard | None = None,
    available: Collection[str] | None = None,
    tz: tzinfo = UTC,
) -> SessionView | None:
    """Start the session's payment by `method` (checkout.pay), in one transaction. None once it is started
    (or one already was: a double click); the session as it is now, with its payment, when it was paid or
    expired meanwhile. What checkout.pay raises (a 400 naming the field, a 429) leaves nothing written."""
    async with db.transaction() as conn:
        try:
            await checkout.pay(
                conn,
                vault,
                session_id,
                method,
                processor=processor,
                max_payments=max_payments,
                guard=guard,
                available=available,
                tz=tz,  # a subscription's periods follow the business time zone
            )
        except SessionClosed:
            session = await checkout.get(conn, session_id)
            return SessionView(session, await _payment(conn, session))
    return None


async def _session_or_none(conn: Conn, session_id: str) -> CheckoutSession | None:
    """None also for a session hosted by a processor (Stripe Checkout): its page is the processor's, never ours."""
    try:
        session = await checkout.get(conn, session_id)
    except NotFound:
        return None
    return session if session.processor is None else None


async def _merchant_name(conn: Conn, session: CheckoutSession) -> str | None:
    merchant = await merchant_store.get_merchant(conn, session.merchant_id)
    return merchant.name if merchant else None


async def _payment(conn: Conn, session: CheckoutSession) -> Payment | None:
    if session.payment_id is None:
        return None
    found = await payment_store.get_payments_by_ids(conn, [session.payment_id])
    return found[0] if found else None
