"""Stripe Checkout as the hosted page of a Tender checkout session (issue 13 item 5, API.md "Hosted by the
processor").

Registration is exactly-once by Tender's own record, not by Stripe's idempotency keys (they expire after 24 h
and emulators ignore them):
1. the session row is committed first, "registering" (`processor_session_id` NULL, due for a look-up soon);
2. before creating a Stripe session, Stripe's sessions created since then are searched for ours
   (`client_reference_id` = Tender's id): a call whose answer was lost, or a crash before step 3, is found
   there instead of making a second page; only then is one created (Tender's id as its Idempotency-Key too);
3. Stripe's `cs_...` id and page are written in the transaction that answers the merchant (the idempotent
   POST's), or by the pump's look-up if the request died on the way.
Completion comes by `checkout.session.completed` (POST /webhooks/stripe calls `apply_event`) or by a look-up:
when the merchant retrieves the session (the shopper is back on `success_url`) and on the expiry pump's
schedule while it is open, so nothing waits for a notification that never comes. A paid Stripe session
becomes a payment (processor stripe, `processor_reference` its PaymentIntent) that succeeds through
services/payment_transitions.py, the one status-change path: event, session completed, payable and ledger
entry in one transaction, as for Tender's own page.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from tender.config import Settings
from tender.domain.ids import ATTEMPT, PAYMENT, new_id
from tender.domain.models import Attempt, CheckoutSession, CheckoutStatus, Payment
from tender.domain.outcomes import Outcome, ProcessorResult
from tender.domain.payments import PaymentStatus
from tender.errors import CheckoutSessionBusy, InvalidRequest, PaymentInProgress, ProcessorUnavailable, SessionNotOpen
from tender.processors.stripe_checkout import (
    SessionRequest,
    StripeCheckout,
    StripeCheckoutUnavailable,
    StripeSession,
)
from tender.services import checkout, payment_transitions
from tender.store import attempts as attempt_store
from tender.store import checkout as store
from tender.store import payments as payment_store
from tender.store.db import Conn, Database
from tender.vault import Vault

log = logging.getLogger(__name__)

PROCESSOR = "stripe"
FIRST_LOOK = timedelta(minutes=2)  # a registering session the request did not finish: the pump registers it
REGISTRATION_LEASE = timedelta(seconds=60)  # longer than a Stripe call may take (TENDER_PROCESSOR_TIMEOUT_SECONDS)
LOOK_EVERY = timedelta(minutes=5)  # an open Stripe session, in case its webhook never comes
HANDLED = (
    "checkout.session.completed",
    "checkout.session.expired",
    "checkout.session.async_payment_succeeded",
    "checkout.session.async_payment_failed",
)


@dataclass(frozen=True, slots=True)
class StripeAccess:
    """How to reach Stripe: Tender's account, from Settings."""

    secret_key: str | None
    api_base: str | None
    timeout: float

    @classmethod
    def of(cls, settings: Settings) -> StripeAccess:
        key = settings.stripe_secret_key
        return cls(
            key.get_secret_value() if key is not None else None,
            settings.stripe_api_base,
            settings.processor_timeout_seconds,
        )


_clients: dict[tuple[str, str | None, float], StripeCheckout] = {}


async def _client(conn: Conn, vault: Vault, access: StripeAccess, merchant_id: str) -> StripeCheckout:
    # Tender's own Stripe account, whoever the merchant. Not yet a merchant's own account
    # (services/processor_accounts.credentials): the payment's refunds, captures and Stripe's events would then
    # have to use that account too, and the refund pump and the webhook route do not know it yet.
    key = access.secret_key
    if key is None:
        raise InvalidRequest("processor: stripe is not configured (TENDER_STRIPE_SECRET_KEY)", param="processor")
    cache_key = (key, access.api_base, access.timeout)
    if cache_key not in _clients:  # one HTTP connection pool per account, for the process's life
        _clients[cache_key] = StripeCheckout(key, api_base=access.api_base, timeout=access.timeout)
    return _clients[cache_key]


def _return_url(url: str, session_id: str, status: str) -> str:
    # As Tender's own page does: the merchant's page learns which session, and retrieves it (a look-up).
    return f"{url}{'&' if '?' in url else '?'}session_id={session_id}&status={status}"


def _request(session: CheckoutSession) -> SessionRequest:
    return SessionRequest(
        reference=session.id,
        amount=session.amount,
        currency=session.currency.strip(),
        name=session.description or f"Order {session.reference}",
        success_url=_return_url(session.success_url, session.id, "succeeded"),
        cancel_url=session.cancel_url,
        expires_at=session.expires_at,
        created=session.created,
    )


async def create(
    db: Database,
    vault: Vault,
    access: StripeAccess,
    merchant_id: str,
    request: checkout.SessionCreate,
    *,
    base_url: str,
) -> tuple[CheckoutSession, bool, StripeSession | None]:
    """Steps 1 and 2: the session on record (or the open one of this reference), then its Stripe session found
    or created. (session, created, Stripe's session or None if already registered); step 3 is `record`.
    Raises InvalidRequest (400 naming the field) before anything is written, ProcessorUnavailable (503) if
    Stripe does not answer: the session stays registering, and a retry or the pump finishes it."""
    token = uuid.uuid4()
    async with db.transaction() as conn:
        client = await _client(conn, vault, access, merchant_id)  # 400 now if Stripe is not set up for the merchant
        session, created = await checkout.create(conn, merchant_id, request, base_url=base_url, first_look=FIRST_LOOK)
        if session.processor_session_id is not None or session.status is not CheckoutStatus.OPEN:
            return session, created, None
        # One caller registers at a time (a concurrent retry, the pump): both searching, finding nothing and
        # creating would make two Stripe pages for one session.
        if not await store.take_registration(conn, session.id, token, REGISTRATION_LEASE.total_seconds()):
            raise CheckoutSessionBusy("This session is being registered at Stripe right now; try again shortly.")
    try:
        return session, created, await _register(client, session)
    except StripeCheckoutUnavailable as exc:
        async with db.transaction() as conn:
            await store.release_registration(conn, session.id, token, FIRST_LOOK.total_seconds())
        raise ProcessorUnavailable(f"Stripe did not answer; retry the request. {exc}") from None


async def _register(client: StripeCheckout, session: CheckoutSession) -> StripeSession:
    found = await client.find(session.id, session.created)
    if found is not None:
        log.info("checkout session %s: its Stripe session %s was already registered", session.id, found.id)
        return found
    return await client.create(_request(session))


async def record(conn: Conn, session: CheckoutSession, registered: StripeSession | None) -> CheckoutSession:
    """Step 3, in the transaction that answers: Stripe's session id and page on record, once; the look-ups
    are then due every LOOK_EVERY (store.schedule is the pump's; here the row is simply due later)."""
    if registered is None:
        return await checkout.get(conn, session.id)
    if registered.url is None:
        raise ProcessorUnavailable("Stripe answered a session without a page; retry the request.")
    found = await store.record_registration(
        conn, session.id, registered.id, registered.url, next_look_seconds=LOOK_EVERY.total_seconds()
    )
    assert found is not None  # sessions are never deleted
    return found


async def apply_event(conn: Conn, event: Mapping[str, Any], *, tz: tzinfo = UTC) -> str:
    """A verified Stripe event `checkout.session.*` (POST /webhooks/stripe), in the caller's transaction:
    applied at most once and never backwards. Returns what happened: applied, stale (already so), ignored
    (not a checkout event, or one that changes nothing yet), unknown_reference (not a Tender session) or
    mismatch (Stripe's amount is not the session's: nothing booked, logged for an operator)."""
    kind = str(event.get("type", ""))
    if kind not in HANDLED:
        return "ignored"
    obj = (event.get("data") or {}).get("object") or {}
    if not isinstance(obj, Mapping) or obj.get("object") != "checkout.session" or not obj.get("id"):
        return "ignored"
    stripe_session = StripeSession.from_dict(obj)
    failed = kind == "checkout.session.async_payment_failed"
    return await _apply(conn, stripe_session, tz=tz, async_failed=failed)


async def _apply(conn: Conn, s: StripeSession, *, tz: tzinfo, async_failed: bool = False) -> str:
    session = await store.by_processor_session(conn, PROCESSOR, s.id, lock=True)
    if session is None and s.client_reference_id:  # registered at Stripe, its answer not yet on record
        session = await store.get(conn, s.client_reference_id, lock=True)
        if session is not None and session.processor != PROCESSOR:
            session = None
    if session is None:
        return "unknown_reference"
    if session.status is not CheckoutStatus.OPEN:
        return "stale"
    if session.processor_session_id is None and s.url:
        await store.record_registration(conn, session.id, s.id, s.url, next_look_seconds=LOOK_EVERY.total_seconds())
    if s.amount_total is not None and (s.amount_total, (s.currency or "").upper()) != (
        session.amount,
        session.currency.strip(),
    ):
        # Tender made the Stripe session with the session's amount: another is not Tender's to book on a guess.
        log.error("checkout session %s: Stripe session %s has another amount; left to an operator", session.id, s.id)
        return "mismatch"
    if s.paid:
        await _pay(conn, session, s, Outcome.APPROVED, tz=tz)
        return "applied"
    if async_failed:  # a delayed payment method failed: the session took no money and is over
        await _pay(conn, session, s, Outcome.DECLINED, tz=tz)
        await checkout.expire_now(conn, session.id)
        return "applied"
    if s.status == "expired":
        await checkout.expire_now(conn, session.id)
        return "applied"
    return "ignored"  # open, or complete but its payment still on its way (async_payment_succeeded follows)


async def _pay(conn: Conn, session: CheckoutSession, s: StripeSession, outcome: Outcome, *, tz: tzinfo) -> None:
    """The session's payment: recorded as Stripe took it (its PaymentIntent), then its status moved through
    the one status-change path, which completes the session and books the payable and ledger entry."""
    now = datetime.now(UTC)
    payment = Payment(
        id=new_id(PAYMENT),
        merchant_id=session.merchant_id,
        amount=session.amount,
        currency=session.currency.strip(),
        status=PaymentStatus.PROCESSING,
        capture=True,
        amount_captured=0,
        amount_refunded=0,
        # Stripe's page took the card: Tender never saw it, so no brand or last4 (funding unknown: credit terms).
        payment_method={"type": "card", "card": None},
        card_id=None,
        reference=None,
        description=session.description,
        metadata={"stripe_checkout_session": s.id},
        customer=None,
        return_url=None,
        failure_code=None,
        decline_code=None,
        failure_message=None,
        next_action=None,
        processor=PROCESSOR,
        created=now,
        updated=now,
        processor_reference=s.payment_intent,
        checkout_session_id=session.id,
    )
    await payment_store.insert_payment(conn, payment, next_run_at=None)  # final in this same transaction
    attempt = Attempt(new_id(ATTEMPT), payment.id, "authorize", PROCESSOR, processor_reference=s.payment_intent)
    await attempt_store.insert(conn, [attempt])
    await store.set_payment(conn, session.id, payment.id)
    if outcome is Outcome.APPROVED:
        result = ProcessorResult(Outcome.APPROVED, processor_reference=s.payment_intent, captured=True)
    else:
        result = ProcessorResult(
            Outcome.DECLINED,
            processor_reference=s.payment_intent,
            failure_code="payment_failed",
            message="The delayed payment on Stripe's page failed.",
        )
    applied = await payment_transitions.apply_answer(conn, attempt, result, tz=tz, action_lookup=LOOK_EVERY)
    if applied != "applied":  # a payment made just now cannot have moved on: a bug, not a race
        raise RuntimeError(f"payment {payment.id}: the Stripe checkout answer was {applied}")


async def look_up(db: Database, vault: Vault, access: StripeAccess, session_id: str, *, tz: tzinfo = UTC) -> bool:
    """Ask Stripe about one session and apply what it says; registers one left registering (only the pump calls
    it for those: its claim is the registration's lease). True while it stays open (look again later). Raises
    StripeCheckoutUnavailable when Stripe does not answer."""
    async with db.connection() as conn:
        session = await checkout.get(conn, session_id)
        if session.status is not CheckoutStatus.OPEN or session.processor != PROCESSOR:
            return False
        client = await _client(conn, vault, access, session.merchant_id)
    now = datetime.now(UTC)
    if session.processor_session_id is not None:
        found: StripeSession | None = await client.retrieve(session.processor_session_id)
    elif now < session.expires_at:  # registering: the request that began it died before its end
        found = await _register(client, session)
    else:
        found = await client.find(session.id, session.created)
        if found is None:  # never registered, and past its time: no shopper ever had a page to pay on
            async with db.transaction() as conn:
                await checkout.expire_now(conn, session.id)
            return False
    assert found is not None
    if found.status == "open" and now >= session.expires_at + timedelta(minutes=1):
        found = await client.expire(found.id)  # Stripe expires it itself; this makes sure, then asks again
    async with db.transaction() as conn:
        await _apply(conn, found, tz=tz)
        current = await checkout.get(conn, session.id)
    return current.status is CheckoutStatus.OPEN


async def retrieve(
    db: Database, vault: Vault, access: StripeAccess, session_id: str, merchant_id: str, *, tz: tzinfo = UTC
) -> CheckoutSession:
    """GET /v1/checkout/sessions/{id} of a Stripe session still open: looked up first (the shopper is back on
    `success_url`, the merchant asks); if Stripe does not answer, the session as Tender knows it."""
    session = await checkout.retrieve(db, session_id, merchant_id)
    # A session still registering is left to its request or the pump (they hold the registration's lease).
    registered = session.processor_session_id is not None
    if session.processor == PROCESSOR and session.status is CheckoutStatus.OPEN and registered:
        try:
            await look_up(db, vault, access, session_id, tz=tz)
        except StripeCheckoutUnavailable as exc:
            log.warning("checkout session %s: look-up failed: %s", session_id, exc)
        session = await checkout.retrieve(db, session_id, merchant_id)
    return session


async def expire(
    db: Database, vault: Vault, access: StripeAccess, merchant_id: str, session_id: str, *, tz: tzinfo = UTC
) -> CheckoutSession:
    """The merchant closes a Stripe session: expired at Stripe first (the shopper may be paying there right now:
    if Stripe says it was paid, it completes instead, and the merchant hears 409 session_not_open)."""
    session = await checkout.retrieve(db, session_id, merchant_id)
    if session.status is not CheckoutStatus.OPEN:
        raise SessionNotOpen(f"Only an open session can be expired; this one is {session.status}.")
    token = uuid.uuid4()
    async with db.transaction() as conn:
        client = await _client(conn, vault, access, merchant_id)
        # Still registering: take the registration's lease, or a registration finishing meanwhile would leave a
        # Stripe page open for a session Tender expired (a payment there then booked nowhere).
        registering = session.processor_session_id is None
        if registering and not await store.take_registration(
            conn, session.id, token, REGISTRATION_LEASE.total_seconds()
        ):
            raise CheckoutSessionBusy("This session is being registered at Stripe right now; try again shortly.")
    try:
        if session.processor_session_id is None:
            found = await client.find(session.id, session.created)
        else:
            found = await client.retrieve(session.processor_session_id)
        if found is not None and found.status == "open":
            found = await client.expire(found.id)
    except StripeCheckoutUnavailable as exc:
        if registering:
            async with db.transaction() as conn:
                await store.release_registration(conn, session.id, token, FIRST_LOOK.total_seconds())
        raise ProcessorUnavailable(f"Stripe did not answer; retry the request. {exc}") from None
    async with db.transaction() as conn:
        if found is not None:
            await _apply(conn, found, tz=tz)
        else:
            await checkout.expire_now(conn, session.id)
        session = await checkout.get(conn, session_id, merchant_id)
    if session.status is CheckoutStatus.COMPLETE:
        raise SessionNotOpen("The shopper paid this session on Stripe's page before it could be expired.")
    if session.status is CheckoutStatus.OPEN:  # Stripe holds it open (a payment underway)
        raise PaymentInProgress("A payment of this session is in progress at Stripe; try again when it ends.")
    return session


async def look_up_due(
    db: Database, vault: Vault, access: StripeAccess, session_ids: Sequence[str], *, tz: tzinfo = UTC
) -> dict[str, datetime]:
    """The expiry pump's look-ups of the Stripe sessions it claimed: when to look at each again (only those
    still open). A session Stripe did not answer about is looked at again sooner."""
    due: dict[str, datetime] = {}
    for session_id in session_ids:
        try:
            still_open = await look_up(db, vault, access, session_id, tz=tz)
        except StripeCheckoutUnavailable as exc:
            log.warning("checkout session %s: look-up failed: %s", session_id, exc)
            still_open = True
        if still_open:
            due[session_id] = datetime.now(UTC) + LOOK_EVERY
    return due


async def reschedule(conn: Conn, token: Any, due: dict[str, datetime]) -> None:
    await store.schedule(conn, token, due)
