"""Hosted checkout sessions: an order registered once, paid on Tender's own page, expired when abandoned.

A session is created by the merchant's backend (`POST /v1/checkout/sessions`); the shopper pays on its
`url`. The same `reference` while a session is open (or already paid) answers that session, so an order is
registered exactly once. Paying locks the session row: a second "Pay" while a payment is in progress (a
double click) makes no new payment; after a decline the shopper may try another card, as a new payment of
the same session. The session completes in the transaction that marks its payment `succeeded` (worker or
processor notification, see `on_payment_changes`), and expires after `expires_at` by the expiry pump (`expire_due`),
unless a payment is still in progress then.

Recurring (issue 15): a session may name a `customer` and ask `setup_future_usage: "off_session"` (the card paid
with is saved to that customer once authorized, services/payments.py), or be `mode: "subscription"`: the shopper
enters a card once, it is saved (to the session's customer, or to one made for the shopper then), and the
subscription starts with it through services/subscriptions.create; the page follows its first invoice's payment
like any payment, and the session completes when that payment succeeds (at once during a trial). After a decline
the shopper may try another card: the subscription whose first payment failed is canceled and a new one starts
with the new card; a session expiring with such a subscription cancels it too, so an abandoned checkout is never
charged later by dunning.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tender.domain import cards, money
from tender.domain.ids import CHECKOUT_SESSION, MAX_ID_LENGTH, new_id
from tender.domain.methods import APM_TYPES
from tender.domain.models import CheckoutSession, CheckoutStatus, Payment
from tender.domain.payments import (
    MAX_METADATA_KEYS,
    MAX_REFERENCE_LENGTH,
    MAX_URL_LENGTH,
    PaymentStatus,
    validate_metadata,
    validate_reference,
)
from tender.domain.recurring import Interval, SubscriptionStatus
from tender.errors import (
    CheckoutSessionBusy,
    DuplicateReference,
    InvalidRequest,
    NoSuchObject,
    NotFound,
    ParameterMissing,
    PaymentInProgress,
    SessionNotOpen,
    TooManyAttempts,
)
from tender.services import billing, customers, payment_methods, payments, subscriptions, velocity
from tender.services.objects import session_object
from tender.services.payment_requests import PaymentCreate
from tender.services.validation import parse
from tender.store import checkout as store
from tender.store import customers as customer_store
from tender.store import events
from tender.store import invoices as invoice_store
from tender.store import payments as payment_store
from tender.store import subscriptions as subscription_store
from tender.store.db import Conn, Database, Page
from tender.vault import Vault

DEFAULT_LIFETIME = timedelta(hours=24)
HOSTED_BY = ("stripe",)  # processors that host a checkout page of their own
MIN_HOSTED_LIFETIME = 1800  # Stripe Checkout: expires_at 30 minutes to 24 hours ahead
METHOD_TYPES = ("card", *APM_TYPES)
IN_PROGRESS = frozenset({PaymentStatus.PROCESSING, PaymentStatus.REQUIRES_ACTION})
# The session's payment ended without money: the shopper may try again (a decline, or a merchant's cancel).
RETRYABLE = frozenset({PaymentStatus.FAILED, PaymentStatus.CANCELED})


class SubscriptionData(BaseModel):
    """What a `mode: "subscription"` session starts once the shopper has entered a card."""

    model_config = ConfigDict(strict=True, extra="forbid")

    amount: int = Field(description="Per period, in the currency's minor unit.")
    currency: str = Field(max_length=3, description="ISO 4217 code, e.g. BRL.")
    interval: Literal["day", "week", "month", "year"] = Field(description="The period's unit.")
    interval_count: int = Field(default=1, description="Units per period (at most a year per period).")
    trial_days: int = Field(default=0, description="Days of free trial before the first period (0 to 730).")
    metadata: dict[str, Any] | None = Field(
        default=None,
        max_length=MAX_METADATA_KEYS,
        description="The subscription's: at most 50 keys of 1 to 40 characters, values strings of at most 500.",
    )


class SessionCreate(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    mode: Literal["payment", "subscription"] = Field(
        default="payment",
        description='"payment" (default): one payment of `amount`; "subscription": the card entered is saved and'
        " starts the subscription described by `subscription`.",
    )
    amount: int | None = Field(default=None, description="In the currency's minor unit (payment mode: required).")
    currency: str | None = Field(default=None, max_length=3, description="ISO 4217 code, e.g. BRL (payment mode).")
    reference: str | None = Field(
        default=None,
        max_length=MAX_REFERENCE_LENGTH,
        description="Your order id, 1 to 255 characters: one open (or paid) session per reference (payment mode:"
        " required; subscription mode: default the session's id).",
    )
    customer: str | None = Field(
        default=None,
        max_length=MAX_ID_LENGTH,
        description="A customer (cus_...): a card saved on this page is saved to it (subscription mode: default a"
        " new customer).",
    )
    setup_future_usage: Literal["off_session"] | None = Field(
        default=None,
        description='Payment mode: "off_session" saves the card paid with to `customer` (required then).',
    )
    subscription: SubscriptionData | None = Field(
        default=None, description="Subscription mode (required then): the subscription the card starts."
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
    session_id = new_id(CHECKOUT_SESSION)
    plan = _subscription_plan(request) if request.mode == "subscription" else None
    if plan is not None:
        currency, amount = plan["currency"], plan["amount"]
        reference = validate_reference(request.reference) if request.reference is not None else session_id
    else:
        if request.subscription is not None:
            raise InvalidRequest('subscription: only with mode "subscription"', param="subscription")
        for name in ("amount", "currency", "reference"):
            if getattr(request, name) is None:
                raise ParameterMissing(f"Missing required parameter: {name}", param=name)
        assert request.currency is not None and request.amount is not None
        currency = money.normalize_currency(request.currency)
        amount = money.validate_amount(request.amount, currency)
        reference = validate_reference(request.reference)
    if not reference:
        raise InvalidRequest("reference: must not be empty", param="reference")
    await _check_customer(conn, merchant_id, request)
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
        mode=request.mode,
        customer_id=request.customer,
        setup_future_usage=request.setup_future_usage,
        subscription_data=plan,
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


def _subscription_plan(request: SessionCreate) -> dict[str, Any]:
    """A subscription session's plan, checked now (a 400 naming `subscription.<field>`), stored with it."""
    plan = request.subscription
    if plan is None:
        raise ParameterMissing('subscription: required with mode "subscription"', param="subscription")
    for name in ("amount", "currency"):
        if getattr(request, name) is not None:
            raise InvalidRequest(f"{name}: give it in subscription.{name} in subscription mode", param=name)
    if request.setup_future_usage is not None:
        raise InvalidRequest("setup_future_usage: a subscription's card is always saved", param="setup_future_usage")
    if request.processor is not None:
        raise InvalidRequest("processor: a subscription is taken on Tender's own page", param="processor")
    if list(request.payment_method_types) != ["card"]:
        raise InvalidRequest("payment_method_types: a subscription is paid by card", param="payment_method_types")
    currency = money.normalize_currency(plan.currency, param="subscription.currency")
    amount = money.validate_amount(plan.amount, currency, param="subscription.amount")
    interval = Interval(plan.interval)
    top = subscriptions.MAX_INTERVAL_COUNT[interval]
    if not 1 <= plan.interval_count <= top:
        raise InvalidRequest(
            f"subscription.interval_count: 1 to {top} for interval {interval}", param="subscription.interval_count"
        )
    if not 0 <= plan.trial_days <= subscriptions.MAX_TRIAL_DAYS:
        raise InvalidRequest(
            f"subscription.trial_days: 0 to {subscriptions.MAX_TRIAL_DAYS}", param="subscription.trial_days"
        )
    return {
        "amount": amount,
        "currency": currency,
        "interval": interval.value,
        "interval_count": plan.interval_count,
        "trial_days": plan.trial_days,
        "metadata": validate_metadata(plan.metadata, param="subscription.metadata"),
    }


async def _check_customer(conn: Conn, merchant_id: str, request: SessionCreate) -> None:
    if request.setup_future_usage is not None and request.customer is None:
        raise ParameterMissing("customer: required with setup_future_usage (the card is saved to it)", param="customer")
    if request.customer is not None and (request.processor is not None or request.payment_method_types != ["card"]):
        # A processor's page (Stripe Checkout) saves nothing in Tender's vault; an APM has no card to save.
        param = "processor" if request.processor is not None else "payment_method_types"
        raise InvalidRequest(f"{param}: a card is saved for a customer on Tender's page, paid by card", param=param)
    found = None
    if request.customer is not None and request.customer.startswith("cus_"):
        found = await customer_store.get(conn, merchant_id, request.customer)
    if request.customer is not None and found is None:
        raise NoSuchObject("customer: no such customer", param="customer")


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
    for s in expired:  # a subscription whose first payment failed on this page is never charged again
        await _cancel_unstarted(conn, s)
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
    tz: tzinfo = UTC,
) -> Payment | None:
    """Start the session's payment by `method` (`{"type": "card", "card": {...}}`, or an alternative method
    the session offers), unless one is already in progress or done (a double click): then that one. A
    subscription session starts its subscription instead (`_subscribe`): its first invoice's payment, or None
    during a trial (the session is then complete).
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
    if session.mode == "subscription":
        setup = billing.BillingSetup.of(tz, processor, available if available is not None else (processor,))
        return await _subscribe(conn, vault, session, method, setup=setup, now=now, guard=guard)
    request = PaymentCreate(
        amount=session.amount,
        currency=session.currency.strip(),
        payment_method=method,
        description=session.description,
        return_url=session.url + "?returned=1",  # back to the page after 3-D Secure or the provider's page
        customer=session.customer_id,
        setup_future_usage=session.setup_future_usage,  # type: ignore[arg-type]  # checked when stored
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


async def _subscribe(
    conn: Conn,
    vault: Vault,
    session: CheckoutSession,
    method: dict[str, Any],
    *,
    setup: billing.BillingSetup,
    now: datetime,
    guard: velocity.Guard | None,
) -> Payment | None:
    """The card entered on a subscription session's page: saved (no CVC) to the session's customer (one is made
    for the shopper if none), then the subscription starts with it (services/subscriptions.create: its first
    invoice and that invoice's off-session payment, unless a trial comes first). A subscription left by an
    earlier card whose first payment failed is canceled first. In the caller's transaction, the session locked."""
    plan = session.subscription_data or {}
    card = method.get("card") if isinstance(method.get("card"), dict) else {}
    saved_card = parse(payment_methods.SavedCardIn, card, prefix="payment_method.card")
    # Checked as the payment form's card is (its CVC required, never stored), naming payment_method.card.*.
    checked = cards.validate_card(
        number=saved_card.number, exp_month=saved_card.exp_month, exp_year=saved_card.exp_year, cvc=saved_card.cvc,
        holder_name=saved_card.holder_name, today=now.date(), param_prefix="payment_method.card",
    )  # fmt: skip
    if guard is not None:  # the velocity limits of a card payment, as on the payment form
        fingerprint = vault.fingerprint(checked.number, merchant_id=session.merchant_id)
        await guard.check(
            conn, merchant_id=session.merchant_id, fingerprint=fingerprint, session_id=session.id, now=now
        )
    if session.subscription_id is not None:
        await _cancel_unstarted(conn, session)
    customer_id = session.customer_id
    if customer_id is None:
        made = await customers.create(conn, session.merchant_id, customers.CustomerCreate(name=saved_card.holder_name))
        customer_id = made.id
    saved = await payment_methods.create(
        conn,
        vault,
        session.merchant_id,
        payment_methods.PaymentMethodCreate(type="card", card=saved_card, customer=customer_id),
        now=now,
    )
    metadata = {**plan.get("metadata", {}), "checkout_session": session.id}
    request = subscriptions.SubscriptionCreate(
        customer=customer_id,
        payment_method=saved.id,
        amount=int(plan["amount"]),
        currency=str(plan["currency"]),
        interval=plan["interval"],
        interval_count=int(plan.get("interval_count", 1)),
        trial_days=int(plan.get("trial_days", 0)),
        metadata=metadata,
    )
    started = await subscriptions.create(conn, session.merchant_id, request, setup=setup)
    payment = await _first_payment(conn, session.merchant_id, started.latest_invoice_id)
    await store.set_subscription(
        conn,
        session.id,
        customer_id=customer_id,
        subscription_id=started.id,
        payment_id=payment.id if payment else None,
    )
    if payment is None:  # a trial: nothing to pay now, the subscription has started
        done = await store.finish(conn, [session.id], CheckoutStatus.COMPLETE)
        await events.record(
            conn, [(s.merchant_id, "checkout.session.completed", s.id, session_object(s)) for s in done]
        )
    else:
        await store.adopt_payment(conn, session.id, payment.id)
        if guard is not None:
            await guard.record(conn, payment.id, now)
    return payment


async def _first_payment(conn: Conn, merchant_id: str, invoice_id: str | None) -> Payment | None:
    invoice = await invoice_store.get(conn, merchant_id, invoice_id) if invoice_id else None
    if invoice is None or invoice.payment_id is None:
        return None
    found = await payment_store.get_payments_by_ids(conn, [invoice.payment_id])
    return found[0] if found else None


async def _cancel_unstarted(conn: Conn, session: CheckoutSession) -> None:
    """A subscription this open session started whose first payment did not succeed (else the session would be
    complete): canceled now, so that a new card starts afresh and dunning never charges an abandoned checkout."""
    if session.subscription_id is None:
        return
    current = await subscription_store.get(conn, session.merchant_id, session.subscription_id)
    if current is not None and current.status != SubscriptionStatus.CANCELED:
        await subscriptions.cancel(
            conn, session.merchant_id, session.subscription_id, subscriptions.SubscriptionCancel(at_period_end=False)
        )


async def on_payment_changes(conn: Conn, changed: list[Payment]) -> None:
    """A session whose payment just succeeded is complete, in the same transaction (a subscription session's
    payment is its subscription's first invoice's, adopted by the session when it started)."""
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
