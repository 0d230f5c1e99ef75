"""Hosted checkout sessions: an order registered once, paid on Tender's own page, expired when abandoned.

A session is created by the merchant's backend (`POST /v1/checkout/sessions`); the shopper pays on its
`url`. The same `reference` while a session is open (or already paid) answers that session, so an order is
registered exactly once. Paying locks the session row: a second "Pay" while a payment is in progress (a
double click) makes no new payment; after a decline the shopper may try another card, as a new payment of
the same session. The session completes in the transaction that marks its payment `succeeded` (worker or
processor notification, see `on_payment_changes`), and expires after `expires_at` by the expiry pump (`expire_due`),
unless a payment is still in progress then.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from tender.domain import money
from tender.domain.ids import CHECKOUT_SESSION, new_id
from tender.domain.methods import APM_TYPES
from tender.domain.models import CheckoutSession, CheckoutStatus, Payment
from tender.domain.payments import MAX_REFERENCE_LENGTH, MAX_URL_LENGTH, PaymentStatus, validate_reference
from tender.errors import (
    CheckoutSessionBusy,
    DuplicateReference,
    InvalidRequest,
    NotFound,
    PaymentInProgress,
    SessionNotOpen,
    TooManyAttempts,
)
from tender.services import payments, velocity
from tender.services.objects import session_object
from tender.services.payment_requests import PaymentCreate
from tender.store import checkout as store
from tender.store import events
from tender.store import payments as payment_store
from tender.store.db import Conn, Database, Page
from tender.vault import Vault

DEFAULT_LIFETIME = timedelta(hours=24)
HOSTED_BY = ("stripe",)  # processors that host a checkout page of their own
MIN_HOSTED_LIFETIME = 1800  # Stripe Checkout: expires_at 30 minutes to 24 hours ahead
METHOD_TYPES = ("card", *APM_TYPES)
IN_PROGRESS = frozenset({PaymentStatus.PROCESSING, PaymentStatus.REQUIRES_ACTION})
# The session's payment ended without money: the shopper may try again (a decline, or a merchant's cancel).
RETRYABLE = frozenset({PaymentStatus.FAILED, PaymentStatus.CANCELED})


class SessionCreate(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    amount: int = Field(description="In the currency's minor unit.")
    currency: str = Field(max_length=3, description="ISO 4217 code, e.g. BRL.")
    reference: str = Field(
        max_length=MAX_REFERENCE_LENGTH,
        description="Your order id, 1 to 255 characters: one open (or paid) session per reference.",
    )
    success_url: str = Field(
        max_length=MAX_URL_LENGTH,
        description="Where the shopper goes after paying; gets ?session_id=&status=. At most 2048 characters.",
    )
    cancel_url: str = Field(max_length=MAX_URL_LENGTH, description="Where the shopper goes on Cancel (at most 2048).")
    payment_method_types: list[Annotated[str, Field(max_length=32)]] = Field(
        default_factory=lambda: ["card"], max_length=10, description="card, upi, wallet, netbanking, bnpl"
    )
    description: str | None = Field(
        default=None, max_length=500, description="Shown to the shopper: at most 500 characters."
    )
    expires_in: int | None = Field(default=None, description="Seconds until it expires: 60 to 86400 (default).")
    processor: str | None = Field(
        default=None,
        max_length=32,
        description='"stripe": the shopper pays on Stripe Checkout\'s page (expires_in at least 1800);'
        " default: Tender's own page.",
    )


class Expire(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")  # no parameters


def _url(value: str, param: str) -> str:
    if not value.startswith(("https://", "http://")) or len(value) < 10 or any(c.isspace() for c in value):
        raise InvalidRequest(f"{param}: must be an absolute http(s) URL", param=param)
    return value


async def create(
    conn: Conn,
    merchant_id: str,
    request: SessionCreate,
    *,
    base_url: str,
    now: datetime | None = None,
    first_look: timedelta | None = None,
) -> tuple[CheckoutSession, bool]:
    """(session, created). An open or paid session of the same reference is answered instead of a new one.
    A session hosted by a processor (`request.processor`) is inserted without a page yet (`url` empty: it is
    registering, services/checkout_stripe.py), first looked at after `first_look`."""
    now = now or datetime.now(UTC)
    currency = money.normalize_currency(request.currency)
    amount = money.validate_amount(request.amount, currency)
    reference = validate_reference(request.reference)
    if not reference:
        raise InvalidRequest("reference: must not be empty", param="reference")
    for i, kind in enumerate(request.payment_method_types):
        if kind not in METHOD_TYPES:
            raise InvalidRequest(
                f"payment_method_types[{i}]: not available; use one of {', '.join(METHOD_TYPES)}",
                param=f"payment_method_types[{i}]",
            )
    if not request.payment_method_types:
        raise InvalidRequest("payment_method_types: list at least one", param="payment_method_types")
    lifetime = DEFAULT_LIFETIME
    if request.expires_in is not None:
        if not 60 <= request.expires_in <= 86400:
            raise InvalidRequest("expires_in: must be 60 to 86400 seconds", param="expires_in")
        lifetime = timedelta(seconds=request.expires_in)
    if request.processor is not None:
        if request.processor not in HOSTED_BY:
            raise InvalidRequest(
                f"processor: a hosted checkout is available on {', '.join(HOSTED_BY)}; leave it out for Tender's page",
                param="processor",
            )
        if lifetime < timedelta(seconds=MIN_HOSTED_LIFETIME):
            raise InvalidRequest(
                f"expires_in: at least {MIN_HOSTED_LIFETIME} seconds for a {request.processor} checkout",
                param="expires_in",
            )
    if request.description is not None and not request.description.isprintable():
        raise InvalidRequest("description: must be printable text", param="description")
    session_id = new_id(CHECKOUT_SESSION)
    session = await store.insert(
        conn,
        id=session_id,
        merchant_id=merchant_id,
        amount=amount,
        currency=currency,
        reference=reference,
        description=request.description,
        success_url=_url(request.success_url, "success_url"),
        cancel_url=_url(request.cancel_url, "cancel_url"),
        url="" if request.processor else f"{base_url.rstrip('/')}/checkout/{session_id}",
        payment_method_types=list(dict.fromkeys(request.payment_method_types)),
        expires_at=now + lifetime,
        processor=request.processor,
        next_run_at=now + first_look if request.processor and first_look is not None else None,
    )
    if session is not None:
        return session, True
    existing = await store.by_reference(conn, merchant_id, reference)
    if existing is None:  # it expired between the two statements: the caller may simply try again
        raise CheckoutSessionBusy("A session for this reference just changed; try again.")
    if (existing.amount, existing.currency.strip(), existing.processor) != (amount, currency, request.processor):
        raise DuplicateReference(
            f"Checkout session {existing.id} already holds this reference with another amount",
            param="reference",
            checkout_session=existing.id,
        )
    return existing, False


async def get(conn: Conn, session_id: str, merchant_id: str | None = None, *, lock: bool = False) -> CheckoutSession:
    session = await store.get(conn, session_id, merchant_id, lock=lock)
    if session is None:
        raise NotFound("No such checkout session.", param="id")
    return session


async def retrieve(db: Database, session_id: str, merchant_id: str) -> CheckoutSession:
    async with db.connection() as conn:
        return await get(conn, session_id, merchant_id)


async def list_(
    db: Database, merchant_id: str, *, limit: int, starting_after: str | None, status: str | None
) -> Page[CheckoutSession]:
    try:
        wanted = CheckoutStatus(status) if status is not None else None
    except ValueError:
        raise InvalidRequest("status: must be open, complete or expired", param="status") from None
    async with db.connection() as conn:
        return await store.list_(conn, merchant_id, limit=limit, starting_after=starting_after, status=wanted)


async def _current_payment(conn: Conn, session: CheckoutSession) -> Payment | None:
    if session.payment_id is None:
        return None
    found = await payment_store.get_payments_by_ids(conn, [session.payment_id])
    return found[0] if found else None


async def _expire(conn: Conn, ids: list[str]) -> list[CheckoutSession]:
    expired = await store.finish(conn, ids, CheckoutStatus.EXPIRED)
    await events.record(conn, [(s.merchant_id, "checkout.session.expired", s.id, session_object(s)) for s in expired])
    return expired


async def expire_now(conn: Conn, session_id: str) -> None:
    """An open session is expired (the processor that hosts it says so, or it was never registered there)."""
    await _expire(conn, [session_id])


async def expire(conn: Conn, merchant_id: str, session_id: str) -> CheckoutSession:
    """The merchant closes an open session (the order was cancelled): the page then refuses to take payment."""
    session = await get(conn, session_id, merchant_id, lock=True)
    if session.status is not CheckoutStatus.OPEN:
        raise SessionNotOpen(f"Only an open session can be expired; this one is {session.status}.")
    current = await _current_payment(conn, session)
    if current is not None and current.status in IN_PROGRESS:
        raise PaymentInProgress("A payment of this session is in progress; try again when it ends.")
    [expired] = await _expire(conn, [session_id])
    return expired


class SessionClosed(Exception):
    """The session takes no more payments: `status` says why (complete or expired)."""

    def __init__(self, status: CheckoutStatus) -> None:
        super().__init__(status)
        self.status = status


async def pay(
    conn: Conn,
    vault: Vault,
    session_id: str,
    method: dict[str, Any],
    *,
    processor: str,
    max_payments: int,
    now: datetime | None = None,
    guard: velocity.Guard | None = None,
    available: Collection[str] | None = None,
) -> Payment:
    """Start the session's payment by `method` (`{"type": "card", "card": {...}}`, or an alternative method
    the session offers), unless one is already in progress or done (a double click): then that one.
    Raises SessionClosed, NotFound, InvalidRequest / ValidationFailed naming the field, or RateLimited (a card
    over one of `guard`'s velocity limits: checked after the session is locked, so a double click is answered
    its payment in progress rather than a 429)."""
    now = now or datetime.now(UTC)
    session = await get(conn, session_id, lock=True)
    if session.processor is not None:  # paid on the processor's page, never on Tender's
        raise NotFound("No such checkout session.", param="id")
    if session.status is not CheckoutStatus.OPEN:
        raise SessionClosed(session.status)
    current = await _current_payment(conn, session)
    if current is not None and current.status not in RETRYABLE:
        return current
    if now >= session.expires_at:
        await _expire(conn, [session_id])
        raise SessionClosed(CheckoutStatus.EXPIRED)
    # Card testing: a stolen-card list tried on one page. After `max_payments` (TENDER_CHECKOUT_MAX_PAYMENTS) a
    # session takes no more.
    if await store.payment_count(conn, session_id) >= max_payments:
        raise TooManyAttempts("Too many payment attempts for this checkout; please contact the shop.")
    if method.get("type") not in session.payment_method_types:
        raise InvalidRequest("This way of paying is not offered in this checkout.", param="payment_method.type")
    request = PaymentCreate(
        amount=session.amount,
        currency=session.currency.strip(),
        payment_method=method,
        description=session.description,
        return_url=session.url + "?returned=1",  # back to the page after 3-D Secure or the provider's page
    )
    payment = await payments.create_payment(
        conn,
        vault,
        session.merchant_id,
        request,
        processor=processor,
        now=now,
        checkout_session_id=session_id,
        guard=guard,
        available=available,  # routed by the merchant's rules among these, as POST /v1/payments is
    )
    await store.set_payment(conn, session_id, payment.id)
    return payment


async def on_payment_changes(conn: Conn, changed: list[Payment]) -> None:
    """A session whose payment just succeeded is complete, in the same transaction."""
    paid = [p.checkout_session_id for p in changed if p.checkout_session_id and p.status == PaymentStatus.SUCCEEDED]
    if paid:
        done = await store.finish(conn, [s for s in paid if s], CheckoutStatus.COMPLETE)
        await events.record(
            conn, [(s.merchant_id, "checkout.session.completed", s.id, session_object(s)) for s in done]
        )


async def expire_due(
    conn: Conn, token: uuid.UUID, rows: Sequence[Mapping[str, Any]], *, recheck_seconds: float
) -> list[str]:
    """The expiry pump's batch (worker/pumps.ExpiryPump), in its claim's transaction: open sessions past
    `expires_at` are expired, except one whose payment is still in progress, looked at again `recheck_seconds`
    later (TENDER_CHECKOUT_EXPIRY_RECHECK_SECONDS). Sessions hosted by a processor are returned instead: only
    the processor knows whether the shopper paid, so they are looked up there (services/checkout_stripe.py)."""
    hosted = await store.hosted_by_processor(conn, [r["id"] for r in rows])
    rows = [r for r in rows if r["id"] not in hosted]
    busy = [r["payment_id"] for r in rows if r["payment_id"]]
    in_progress = {p.id for p in await payment_store.get_payments_by_ids(conn, busy) if p.status in IN_PROGRESS}
    waiting = [r["id"] for r in rows if r["payment_id"] in in_progress]
    await store.reschedule(conn, token, waiting, recheck_seconds)
    await _expire(conn, [r["id"] for r in rows if r["id"] not in waiting])
    return sorted(hosted)
