"""Subscriptions and invoices as merchants ask for them: create, update, cancel, read and list.

What happens over time (renewals, attempts, dunning, test clocks) is services/billing.py's; this module
checks requests (a 400 naming the field, nothing written) and writes the merchant's changes, each with its
events, in the caller's transaction.

Creating: the customer's time is its test clock's (if on one) or the wall clock's. With `trial_days` the
subscription is `trialing` until the trial's end, when the first period starts (the billing anchor) and
is invoiced. Without, the first period starts now and its invoice and first payment are made in the
creating transaction: the subscription is `active` from the start, and `past_due` if that charge fails (see
domain/subscriptions.py). The method charged is the subscription's `payment_method`, else the customer's
default; a customer with neither is a 400 naming `payment_method`.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tender.domain import money
from tender.domain.ids import MAX_ID_LENGTH, SUBSCRIPTION, new_id
from tender.domain.payments import MAX_METADATA_KEYS, MAX_REFERENCE_LENGTH, validate_metadata, validate_reference
from tender.domain.periods import period_end
from tender.domain.recurring import (
    FinalFailure,
    Interval,
    Invoice,
    InvoiceStatus,
    Subscription,
    SubscriptionStatus,
)
from tender.errors import (
    DuplicateReference,
    InvalidRequest,
    NoSuchObject,
    NotFound,
    SubscriptionUnexpectedState,
)
from tender.services import billing
from tender.store import invoices as invoice_store
from tender.store import subscriptions as store
from tender.store.db import Conn, Database, Page

MAX_TRIAL_DAYS = 730
# At most a year per period, as Stripe allows.
MAX_INTERVAL_COUNT = {Interval.DAY: 365, Interval.WEEK: 52, Interval.MONTH: 12, Interval.YEAR: 1}
_METADATA = "At most 50 keys of 1 to 40 characters, each value a string of at most 500 characters."


class SubscriptionCreate(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    customer: str = Field(max_length=MAX_ID_LENGTH, description="The customer (cus_...) billed.")
    payment_method: str | None = Field(
        default=None,
        max_length=MAX_ID_LENGTH,
        description="A saved method (pm_...) attached to the customer; default: the customer's default method.",
    )
    amount: int = Field(description="Per period, in the currency's minor unit.")
    currency: str = Field(max_length=3, description="ISO 4217 code, e.g. BRL.")
    interval: Literal["day", "week", "month", "year"] = Field(description="The period's unit.")
    interval_count: int = Field(default=1, description="Units per period (at most a year per period).")
    trial_days: int = Field(default=0, description="Days of free trial before the first period (0 to 730).")
    reference: str | None = Field(
        default=None, max_length=MAX_REFERENCE_LENGTH, description="The merchant's own id, unique per merchant."
    )
    metadata: dict[str, Any] | None = Field(default=None, max_length=MAX_METADATA_KEYS, description=_METADATA)
    on_final_failure: Literal["unpaid", "cancel"] | None = Field(
        default=None,
        description="After the last failed dunning retry: `unpaid` or `cancel`; default: the merchant's setting.",
    )


class SubscriptionUpdate(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    payment_method: str | None = Field(
        default=None, max_length=MAX_ID_LENGTH, description="A saved method attached to the customer; used from the"
        " next attempt (the next renewal, or the next dunning retry)."
    )  # fmt: skip
    amount: int | None = Field(default=None, description="The amount from the next period on.")
    cancel_at_period_end: bool | None = Field(default=None, description="Cancel when the current period ends.")
    metadata: dict[str, Any] | None = Field(default=None, max_length=MAX_METADATA_KEYS, description=_METADATA)


class SubscriptionCancel(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    at_period_end: bool = Field(default=False, description="Cancel when the current period ends, not now.")


def _check_interval_count(interval: Interval, count: int) -> int:
    top = MAX_INTERVAL_COUNT[interval]
    if not 1 <= count <= top:
        raise InvalidRequest(f"interval_count: 1 to {top} for interval {interval}", param="interval_count")
    return count


async def _check_method(conn: Conn, merchant_id: str, customer_id: str, method: str) -> str:
    exists, owner = await store.method_customer(conn, merchant_id, method)
    if not exists:
        raise NoSuchObject("payment_method: no such payment method", param="payment_method")
    if owner != customer_id:
        raise InvalidRequest("payment_method: not attached to this customer", param="payment_method")
    return method


async def create(
    conn: Conn, merchant_id: str, request: SubscriptionCreate, *, setup: billing.BillingSetup
) -> Subscription:
    """Check and create; without a trial, the first invoice and its payment too. In the caller's transaction."""
    customer = await store.customer_billing(conn, merchant_id, request.customer)
    if customer is None:
        raise NoSuchObject("customer: no such customer", param="customer")
    currency = money.normalize_currency(request.currency)
    amount = money.validate_amount(request.amount, currency)
    interval = Interval(request.interval)
    count = _check_interval_count(interval, request.interval_count)
    if not 0 <= request.trial_days <= MAX_TRIAL_DAYS:
        raise InvalidRequest(f"trial_days: 0 to {MAX_TRIAL_DAYS}", param="trial_days")
    reference = validate_reference(request.reference)
    metadata = validate_metadata(request.metadata)
    if request.payment_method is not None:
        method: str | None = await _check_method(conn, merchant_id, customer.customer_id, request.payment_method)
    elif customer.default_payment_method is not None:
        method = None  # the customer's default, as it is at each attempt
    else:
        raise InvalidRequest(
            "payment_method: the customer has no default payment method; give one", param="payment_method"
        )
    now = customer.clock_time or datetime.now(UTC)
    trial_end = now + timedelta(days=request.trial_days) if request.trial_days else None
    anchor = trial_end or now
    s = Subscription(
        id=new_id(SUBSCRIPTION), merchant_id=merchant_id, customer_id=customer.customer_id, payment_method_id=method,
        amount=amount, currency=currency, interval=interval, interval_count=count,
        status=SubscriptionStatus.TRIALING if trial_end else SubscriptionStatus.ACTIVE, billing_anchor=anchor,
        current_period_start=now, current_period_end=trial_end or period_end(anchor, 0, interval, count, setup.tz),
        trial_end=trial_end, cancel_at_period_end=False, canceled_at=None, ended_at=None, next_amount=None,
        on_final_failure=FinalFailure(request.on_final_failure or customer.on_final_failure),
        dunning_days=list(customer.dunning_days), latest_invoice_id=None, reference=reference, metadata=metadata,
        test_clock_id=customer.test_clock_id, clock_due_at=None, next_run_at=None, created=now, updated=now,
    )  # fmt: skip
    if not await store.insert(conn, s):
        existing = await store.find_by_reference(conn, merchant_id, reference or "")
        raise DuplicateReference(
            f"A subscription with this reference already exists: {existing}", param="reference", subscription=existing
        )
    if trial_end is not None:
        s = billing.scheduled(s, trial_end)
    else:
        s = await billing.start_period(conn, s, start=now, now=now, setup=setup)
    await store.update(conn, s)
    await billing.record_subscription_event(conn, s, "created")
    return s


async def _locked(conn: Conn, merchant_id: str, subscription_id: str) -> Subscription:
    s = await store.lock(conn, subscription_id, merchant_id)
    if s is None:
        raise NotFound("No such subscription.", param="id")
    return s


def _not_ended(s: Subscription, action: str) -> None:
    if s.status == SubscriptionStatus.CANCELED:
        raise SubscriptionUnexpectedState(f"This subscription cannot be {action}: it is canceled.")


async def update(conn: Conn, merchant_id: str, subscription_id: str, request: SubscriptionUpdate) -> Subscription:
    """The merchant's change: the method (from the next attempt), the amount (from the next period), cancel at
    the period's end, metadata. In the caller's transaction."""
    s = await _locked(conn, merchant_id, subscription_id)
    _not_ended(s, "updated")
    now = await billing.time_of(conn, s)
    changes: dict[str, Any] = {}
    if request.payment_method is not None:
        changes["payment_method_id"] = await _check_method(conn, merchant_id, s.customer_id, request.payment_method)
    if request.amount is not None:
        amount = money.validate_amount(request.amount, s.currency)
        changes["next_amount"] = None if amount == s.amount else amount
    if request.cancel_at_period_end is not None:
        changes["cancel_at_period_end"] = request.cancel_at_period_end
        changes["canceled_at"] = now if request.cancel_at_period_end else None
    if request.metadata is not None:
        changes["metadata"] = validate_metadata(request.metadata)
    if changes:
        s = replace(s, **changes, updated=now)
        await store.update(conn, s)
        await billing.record_subscription_event(conn, s, "updated")
    return s


async def cancel(conn: Conn, merchant_id: str, subscription_id: str, request: SubscriptionCancel) -> Subscription:
    """Cancel now (its open invoice, unless a payment of it is in flight, is void) or at the period's end."""
    s = await _locked(conn, merchant_id, subscription_id)
    _not_ended(s, "canceled")
    now = await billing.time_of(conn, s)
    if request.at_period_end:
        if s.status == SubscriptionStatus.UNPAID:
            raise SubscriptionUnexpectedState("An unpaid subscription has no period to end: cancel it now.")
        if not s.cancel_at_period_end:
            s = replace(s, cancel_at_period_end=True, canceled_at=now, updated=now)
            await store.update(conn, s)
            await billing.record_subscription_event(conn, s, "updated")
        return s
    s = await billing.end(conn, s, at=now, now=now)
    await store.update(conn, s)
    return s


async def get(db: Database, merchant_id: str, subscription_id: str) -> Subscription:
    async with db.connection() as conn:
        s = await store.get(conn, merchant_id, subscription_id)
    if s is None:
        raise NotFound("No such subscription.", param="id")
    return s


def _status(value: str | None, allowed: type[SubscriptionStatus] | type[InvoiceStatus]) -> str | None:
    if value is not None and value not in {m.value for m in allowed}:
        raise InvalidRequest("status: must be one of " + ", ".join(m.value for m in allowed), param="status")
    return value


async def list_(
    db: Database,
    merchant_id: str,
    *,
    limit: int,
    starting_after: str | None,
    customer: str | None,
    status: str | None,
) -> Page[Subscription]:
    status = _status(status, SubscriptionStatus)
    async with db.connection() as conn:
        return await store.list_(
            conn, merchant_id, limit=limit, starting_after=starting_after, customer_id=customer, status=status
        )


async def get_invoice(db: Database, merchant_id: str, invoice_id: str) -> Invoice:
    async with db.connection() as conn:
        invoice = await invoice_store.get(conn, merchant_id, invoice_id)
    if invoice is None:
        raise NotFound("No such invoice.", param="id")
    return invoice


async def list_invoices(
    db: Database,
    merchant_id: str,
    *,
    limit: int,
    starting_after: str | None,
    subscription: str | None,
    customer: str | None,
    status: str | None,
) -> Page[Invoice]:
    status = _status(status, InvoiceStatus)
    async with db.connection() as conn:
        return await invoice_store.list_(
            conn, merchant_id, limit=limit, starting_after=starting_after, subscription_id=subscription,
            customer_id=customer, status=status,
        )  # fmt: skip
