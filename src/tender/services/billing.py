"""Recurring billing: renewals, invoices, their payments and dunning, on the wall clock or a test clock.

A subscription is moved one step at a time (domain/subscriptions.py says which), under its row lock or the
renewal pump's lease, in one transaction with everything the step implies:
- renew: the next period's invoice, created exactly once by its unique key (subscription, period start),
  and its first attempt: an off-session payment (services/payments.create_off_session) whose reference
  `inv:<invoice>:<attempt>` is unique per merchant, so a re-run can never make a second payment for it;
- retry: the next attempt at the open invoice, with the subscription's method as it is now;
- cancel at the period's end.
The subscription's next step is written with it: `next_run_at` on the wall clock, `clock_due_at` on a test
clock (`next_run_at` stays NULL there: the wall-clock pump never claims it).

While an attempt's payment is in flight the payment pump charges it like any other; when it reaches a final
status, `services/payment_transitions.py` calls `on_payment_changes` in that same transaction: the invoice is
paid (or the attempt failed and dunning schedules the next, or gives up), the subscription follows, and the
next step is scheduled. A wall-clock subscription waiting on a payment is looked at again `LOOK_AGAIN` later
all the same, so none is ever left without a next step unless canceled or unpaid.

Test clocks. Everything on a clock happens at the clock's time: a step runs at its `clock_due_at`, and the
end of an attempt's payment is dated at the attempt's due time (the period's start plus the dunning offset),
which is also the `now` of its payable (`payment_date`): this module posts that payable itself, before the
generic capture path (which then finds it made and posts nothing). `run_due_for_clock` (called by a clock's
advance) runs the clock's due steps in time order, waiting (bounded) for each step's payments to end before
the next, so a year of monthly renewals and their dunning runs in one advance.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from tender.domain.ids import INVOICE, new_id
from tender.domain.models import Payment
from tender.domain.payments import FINAL_STATUSES, PaymentStatus
from tender.domain.periods import period_end, period_index
from tender.domain.recurring import Customer, Invoice, InvoiceStatus, Subscription, SubscriptionStatus, TestClock
from tender.domain.subscriptions import Step, after_payment, attempt_due, next_step
from tender.errors import InvalidRequest
from tender.services import payables, payments
from tender.services.objects import iso
from tender.store import events
from tender.store import invoices as invoice_store
from tender.store import payments as payment_store
from tender.store import subscriptions as store
from tender.store.db import Conn, Database

log = logging.getLogger(__name__)

# A wall-clock subscription waiting for its payment is looked at again this long after (the payment's end
# schedules it first, in its own transaction; this is the safety net).
LOOK_AGAIN = timedelta(hours=1)
# After a step raised (a bug, a row another transaction holds): tried again this long after.
STEP_RETRY = timedelta(minutes=5)
CLOCK_WAIT_SECONDS = 30.0  # how long an advance waits for one step's payments to end
_CLOCK_POLL_SECONDS = 0.05
_MAX_CLOCK_STEPS = 100_000  # a bound on one advance, whatever a bug would do


@dataclass(frozen=True, slots=True)
class BillingSetup:
    """What billing needs of the deployment (entry points build it from the container): the business time
    zone the periods follow, and where payments go (the default processor and those that are on, routed by
    the merchant's rules as for any payment)."""

    tz: tzinfo = UTC
    processor: str = "simulator"
    available: frozenset[str] | None = None

    @classmethod
    def of(cls, tz: tzinfo, processor: str, available: Collection[str]) -> BillingSetup:
        return cls(tz=tz, processor=processor, available=frozenset(available))


# -- the objects ------------------------------------------------------------------------------------------


def _iso(moment: datetime | None) -> str | None:
    return iso(moment) if moment is not None else None


def subscription_object(s: Subscription) -> dict[str, Any]:
    return {
        "id": s.id,
        "object": "subscription",
        "customer": s.customer_id,
        "payment_method": s.payment_method_id,
        "status": s.status,
        "amount": s.amount,
        "currency": s.currency,
        "interval": s.interval,
        "interval_count": s.interval_count,
        "next_amount": s.next_amount,  # applies from the next period (None: amount stays)
        "billing_cycle_anchor": iso(s.billing_anchor),
        "current_period_start": iso(s.current_period_start),
        "current_period_end": iso(s.current_period_end),
        "trial_end": _iso(s.trial_end),
        "cancel_at_period_end": s.cancel_at_period_end,
        "canceled_at": _iso(s.canceled_at),
        "ended_at": _iso(s.ended_at),
        "latest_invoice": s.latest_invoice_id,
        "on_final_failure": s.on_final_failure,
        "dunning_days": list(s.dunning_days),
        "reference": s.reference,
        "metadata": s.metadata,
        "test_clock": s.test_clock_id,
        "created": iso(s.created),
        "updated": iso(s.updated),
    }


def invoice_object(i: Invoice) -> dict[str, Any]:
    return {
        "id": i.id,
        "object": "invoice",
        "subscription": i.subscription_id,
        "customer": i.customer_id,
        "status": i.status,
        "amount_due": i.amount_due,
        "amount_paid": i.amount_paid,
        "amount_remaining": i.amount_due - i.amount_paid if i.status == InvoiceStatus.OPEN else 0,
        "currency": i.currency,
        "period_start": iso(i.period_start),
        "period_end": iso(i.period_end),
        "payment": i.payment_id,
        "attempt_count": i.attempt_count,
        "next_payment_attempt": _iso(i.next_payment_attempt),
        "created": iso(i.created),
        "updated": iso(i.updated),
    }


async def record_subscription_event(conn: Conn, s: Subscription, kind: str) -> None:
    await events.record(conn, [(s.merchant_id, f"subscription.{kind}", s.id, subscription_object(s))])


def _status_event(before: SubscriptionStatus, after: SubscriptionStatus) -> str:
    if after != before and after == SubscriptionStatus.PAST_DUE:
        return "past_due"
    if after != before and after == SubscriptionStatus.CANCELED:
        return "canceled"
    return "updated"


# -- scheduling -------------------------------------------------------------------------------------------


def scheduled(s: Subscription, due: datetime | None) -> Subscription:
    """`s` due next at `due` (None: nothing due), on its clock or the wall clock."""
    if s.test_clock_id is not None:
        return replace(s, clock_due_at=due, next_run_at=None)
    return replace(s, next_run_at=due, clock_due_at=None)


async def time_of(conn: Conn, s: Subscription) -> datetime:
    """Now, for this subscription: its clock's time, or the wall clock's."""
    if s.test_clock_id is not None:
        frozen = await store.clock_time(conn, s.test_clock_id)
        if frozen is not None:
            return frozen
    return datetime.now(UTC)


async def _in_flight(conn: Conn, invoice: Invoice) -> bool:
    """Whether the invoice's current payment has not ended yet."""
    if invoice.payment_id is None:
        return False
    found = await payment_store.get_payments_by_ids(conn, [invoice.payment_id])
    return bool(found) and found[0].status not in FINAL_STATUSES


# -- steps --------------------------------------------------------------------------------------------------


async def run_step(conn: Conn, s: Subscription, *, now: datetime, setup: BillingSetup) -> Subscription:
    """Run what is due for `s` (locked or leased by the caller) at `now` (its time) and write it with its
    next step. A step not due yet only writes its schedule."""
    invoice = await invoice_store.lock(conn, s.latest_invoice_id) if s.latest_invoice_id else None
    in_flight = invoice is not None and invoice.status == InvoiceStatus.OPEN and await _in_flight(conn, invoice)
    step = next_step(
        s.status,
        cancel_at_period_end=s.cancel_at_period_end,
        invoice_status=invoice.status if invoice else None,
        payment_in_flight=in_flight,
    )
    match step:
        case Step.NONE:
            s = scheduled(s, None)
        case Step.WAIT:  # the payment's end schedules it; on the wall clock, a look later all the same
            s = scheduled(s, None if s.test_clock_id else datetime.now(UTC) + LOOK_AGAIN)
        case Step.RETRY:
            assert invoice is not None
            due = invoice.next_payment_attempt
            if due is not None and due > now:
                s = scheduled(s, due)
            else:
                s = await attempt(conn, s, invoice, now=now, setup=setup)
        case Step.CANCEL:
            if s.current_period_end > now:
                s = scheduled(s, s.current_period_end)
            else:
                s = await end(conn, s, at=s.current_period_end, now=now)
        case Step.RENEW:
            if s.current_period_end > now:
                s = scheduled(s, s.current_period_end)
            else:
                s = await start_period(conn, s, start=s.current_period_end, now=now, setup=setup)
    await store.update(conn, s)
    return s


async def start_period(
    conn: Conn, s: Subscription, *, start: datetime, now: datetime, setup: BillingSetup
) -> Subscription:
    """The period starting at `start` begins: its invoice (exactly once) and its first attempt. Returns the
    subscription as it is now (not written: the caller writes it)."""
    index = period_index(s.billing_anchor, start, s.interval, s.interval_count, setup.tz)
    end_ = period_end(s.billing_anchor, index, s.interval, s.interval_count, setup.tz)
    amount = s.next_amount if s.next_amount is not None else s.amount
    draft = Invoice(
        id=new_id(INVOICE), merchant_id=s.merchant_id, subscription_id=s.id, customer_id=s.customer_id,
        amount_due=amount, amount_paid=0, currency=s.currency, status=InvoiceStatus.OPEN, period_start=start,
        period_end=end_, payment_id=None, attempt_count=0, next_payment_attempt=start, created=now, updated=now,
    )  # fmt: skip
    invoice, made = await invoice_store.insert_once(conn, draft)
    renewal = s.latest_invoice_id is not None or s.status == SubscriptionStatus.TRIALING
    s = replace(
        s,
        amount=amount,
        next_amount=None,
        current_period_start=invoice.period_start,
        current_period_end=invoice.period_end,
        latest_invoice_id=invoice.id,
        status=SubscriptionStatus.ACTIVE if s.status == SubscriptionStatus.TRIALING else s.status,
        updated=now,
    )
    news = [(s.merchant_id, "invoice.created", invoice.id, invoice_object(invoice))] if made else []
    if renewal:
        news.append((s.merchant_id, "subscription.updated", s.id, subscription_object(s)))
    await events.record(conn, news)  # one statement for both
    if invoice.status != InvoiceStatus.OPEN or (invoice.attempt_count > 0 and await _in_flight(conn, invoice)):
        return scheduled(s, None if s.test_clock_id else datetime.now(UTC) + LOOK_AGAIN)  # a re-run: under way
    return await attempt(conn, s, invoice, now=now, setup=setup)


async def attempt(conn: Conn, s: Subscription, invoice: Invoice, *, now: datetime, setup: BillingSetup) -> Subscription:
    """The next attempt at `invoice` (open, locked): an off-session payment with the subscription's method (or
    the customer's default), referenced `inv:<invoice>:<n>` (unique per merchant: create_off_session answers
    the payment already made for it, never a second one). Without a usable method, or with a card that cannot
    be charged (expired...), the attempt fails at once and dunning goes on."""
    n = invoice.attempt_count + 1
    method = await charge_method(conn, s)
    if method is None:
        log.info("subscription %s: no usable payment method for attempt %d", s.id, n)
        return await _attempt_ended(conn, s, replace(invoice, attempt_count=n, updated=now), None, at=now)
    try:
        async with conn.transaction():  # a savepoint: a refused payment leaves nothing half-written
            payment = await payments.create_off_session(
                conn,
                merchant_id=s.merchant_id,
                customer_id=s.customer_id,
                payment_method_id=method,
                amount=invoice.amount_due,
                currency=invoice.currency,
                reference=f"inv:{invoice.id}:{n}",
                metadata={"subscription": s.id, "invoice": invoice.id},
                invoice_id=invoice.id,
                description=f"Subscription {s.id}, period from {iso(invoice.period_start)[:10]}",
                processor=setup.processor,
                available=setup.available,
            )
    except InvalidRequest as exc:
        log.info("subscription %s: attempt %d refused before any charge (%s)", s.id, n, exc.code)
        return await _attempt_ended(conn, s, replace(invoice, attempt_count=n, updated=now), None, at=now)
    invoice = replace(invoice, attempt_count=n, payment_id=payment.id, next_payment_attempt=None, updated=now)
    await invoice_store.update(conn, invoice)
    return scheduled(s, None if s.test_clock_id else datetime.now(UTC) + LOOK_AGAIN)


async def charge_method(conn: Conn, s: Subscription) -> str | None:
    """The saved method to charge: the subscription's, else its customer's default; None when neither is
    attached to the customer (any more)."""
    return await store.chargeable_method(conn, s.merchant_id, s.customer_id, s.payment_method_id)


async def end(conn: Conn, s: Subscription, *, at: datetime, now: datetime) -> Subscription:
    """Cancel `s` as of `at` (not written: the caller writes it); its open invoice, unless a payment of it is
    in flight (whose end then settles it), is void: nothing will try it again."""
    if s.status == SubscriptionStatus.CANCELED:
        return scheduled(s, None)
    if s.latest_invoice_id is not None:
        invoice = await invoice_store.lock(conn, s.latest_invoice_id)
        if invoice is not None and invoice.status == InvoiceStatus.OPEN and not await _in_flight(conn, invoice):
            voided = replace(invoice, status=InvoiceStatus.VOID, next_payment_attempt=None, updated=now)
            await invoice_store.update(conn, voided)
    s = replace(
        s,
        status=SubscriptionStatus.CANCELED,
        canceled_at=s.canceled_at or now,
        ended_at=at,
        cancel_at_period_end=False,
        updated=now,
    )
    s = scheduled(s, None)
    await record_subscription_event(conn, s, "canceled")
    return s


async def on_customer_deleted(conn: Conn, customer: Customer) -> None:
    """A customer was just deleted, in `conn`'s transaction: its subscriptions end now (as Stripe does)."""
    for s in await store.of_customer(conn, customer.id):
        if s.status != SubscriptionStatus.CANCELED:
            locked = await store.lock(conn, s.id)
            if locked is not None and locked.status != SubscriptionStatus.CANCELED:
                now = await time_of(conn, locked)
                await store.update(conn, await end(conn, locked, at=now, now=now))


# -- a payment's end ----------------------------------------------------------------------------------------


async def on_payment_changes(conn: Conn, payment_ids: Sequence[str], *, tz: tzinfo, now: datetime) -> None:
    """Called by services/payment_transitions.py in the transaction that wrote these payments' new status:
    each invoice whose current payment ended follows it, and so does its subscription."""
    if not payment_ids:
        return
    ended = [
        p
        for p in await payment_store.get_payments_by_ids(conn, payment_ids)
        if p.invoice_id is not None and p.status in FINAL_STATUSES
    ]
    for p in sorted(ended, key=lambda p: p.id):
        await _payment_ended(conn, p, tz=tz, now=now)


async def _payment_ended(conn: Conn, p: Payment, *, tz: tzinfo, now: datetime) -> None:
    assert p.invoice_id is not None
    unlocked = await invoice_store.get(conn, p.merchant_id, p.invoice_id)
    if unlocked is None:
        return
    # Locks in one order everywhere: the subscription, then its invoice.
    s = await store.lock(conn, unlocked.subscription_id)
    invoice = await invoice_store.lock(conn, p.invoice_id)
    if s is None or invoice is None or invoice.status != InvoiceStatus.OPEN or invoice.payment_id != p.id:
        return  # an earlier attempt's late news, or an invoice settled otherwise: nothing follows
    at = now
    if s.test_clock_id is not None:
        # On a clock, the attempt happened at its due time; its payable is dated so (before the generic
        # capture path, which then finds it made).
        at = attempt_due(invoice.period_start, s.dunning_days, invoice.attempt_count) or invoice.period_start
        if p.status == PaymentStatus.SUCCEEDED:
            await payables.record_captures(conn, [p.id], tz=tz, now=at)
    s = await _attempt_ended(conn, s, invoice, p, at=at)
    await store.update(conn, s)


async def _attempt_ended(
    conn: Conn, s: Subscription, invoice: Invoice, p: Payment | None, *, at: datetime
) -> Subscription:
    """The invoice's current attempt ended with payment `p` (None: no method to try): the invoice, the
    subscription and its next step follow (the subscription is returned, not written)."""
    succeeded = p is not None and p.status == PaymentStatus.SUCCEEDED
    outcome = after_payment(
        s.status,
        succeeded=succeeded,
        due=invoice.period_start,
        attempt=invoice.attempt_count,
        dunning_days=s.dunning_days,
        on_final_failure=s.on_final_failure,
    )
    invoice = replace(
        invoice,
        status=outcome.invoice_status,
        amount_paid=p.amount_captured if succeeded and p is not None else invoice.amount_paid,
        next_payment_attempt=outcome.next_attempt,
        updated=at,
    )
    await invoice_store.update(conn, invoice)
    kinds = ["paid"] if succeeded else ["payment_failed"]
    if outcome.invoice_status == InvoiceStatus.UNCOLLECTIBLE:
        kinds.append("uncollectible")
    news = [(invoice.merchant_id, f"invoice.{kind}", invoice.id, invoice_object(invoice)) for kind in kinds]
    before = s.status
    s = replace(s, status=outcome.subscription_status, updated=at)
    if outcome.subscription_status == SubscriptionStatus.CANCELED and before != SubscriptionStatus.CANCELED:
        s = replace(s, canceled_at=at, ended_at=at, cancel_at_period_end=False)
    if outcome.subscription_status in (SubscriptionStatus.CANCELED, SubscriptionStatus.UNPAID):
        s = scheduled(s, None)
    elif outcome.next_attempt is not None:
        s = scheduled(s, outcome.next_attempt)
    else:  # paid: the next renewal (or the cancel at period end) is at the period's end
        s = scheduled(s, s.current_period_end)
    if s.status != before:
        news.append((s.merchant_id, f"subscription.{_status_event(before, s.status)}", s.id, subscription_object(s)))
    await events.record(conn, news)  # one statement for all
    return s


# -- the wall clock: the renewal pump's rows -----------------------------------------------------------------


async def run_leased(db: Database, subscription_id: str, token: uuid.UUID, *, setup: BillingSetup) -> None:
    """One subscription the renewal pump claimed under `token`, stepped in a transaction of its own (short: a
    worker killed meanwhile loses this one step, and the others it claimed are due again a lease later). One
    taken over by another claim meanwhile is left to it."""
    async with db.transaction() as conn:
        s = await store.lock_leased(conn, subscription_id, token)
        if s is not None:
            await run_step(conn, s, now=datetime.now(UTC), setup=setup)


async def postpone(conn: Conn, token: uuid.UUID, failed: Sequence[tuple[str, str]]) -> None:
    """Steps that raised (a bug, a lock timeout): each kept with its error and tried again `STEP_RETRY` later,
    where the lease `token` still holds."""
    for subscription_id, error in failed:
        await store.postpone(conn, subscription_id, datetime.now(UTC) + STEP_RETRY, error, token)


# -- test clocks ---------------------------------------------------------------------------------------------


async def run_due_for_clock(
    db: Database, clock: TestClock, *, setup: BillingSetup | None = None, wait_seconds: float = CLOCK_WAIT_SECONDS
) -> bool:
    """Run everything of `clock` due up to its `frozen_time`, in time order, each step at its own due time;
    after each step, wait (at most `wait_seconds`) for its payments to end, since their ends decide what is
    due next. Returns False if a payment did not end in time: what follows it runs at a later advance (a
    repeated advance to the same time picks up there and does nothing twice). `setup`: the deployment's
    (default: UTC periods, the simulator)."""
    setup = setup or BillingSetup()
    for _ in range(_MAX_CLOCK_STEPS):
        if not await _payments_ended(db, clock.id, wait_seconds):
            log.warning("test clock %s: a payment is still in flight; the rest runs at a later advance", clock.id)
            return False
        async with db.transaction() as conn:
            s = await store.next_due_on_clock(conn, clock.id, clock.frozen_time)
            if s is None:
                return True
            assert s.clock_due_at is not None
            await run_step(conn, s, now=s.clock_due_at, setup=setup)
    log.error("test clock %s: stopped after %d steps in one advance", clock.id, _MAX_CLOCK_STEPS)
    return False


async def _payments_ended(db: Database, clock_id: str, wait_seconds: float) -> bool:
    deadline = time.monotonic() + wait_seconds
    while True:
        async with db.connection() as conn:
            if await store.payments_in_flight_on_clock(conn, clock_id) == 0:
                return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(_CLOCK_POLL_SECONDS)
