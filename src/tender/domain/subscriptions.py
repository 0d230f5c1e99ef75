"""Subscription rules without I/O: what is due next, the dunning schedule, and what a payment's end makes of
an invoice and its subscription.

A subscription moves through its periods by one step at a time, each due at a moment (`next_run_at` on the
wall clock, `clock_due_at` on a test clock):
- `renew` at the current period's end (a trial's end too): the next period starts, its invoice is created
  (once: a unique key) and its first payment attempt made;
- `retry` at the invoice's `next_payment_attempt` (past_due): another attempt, with the method the
  subscription has now;
- `cancel` at the period's end when `cancel_at_period_end` is set;
- `wait` while the invoice's payment is still in flight: its end (`after_payment`) decides what follows.
Canceled and unpaid subscriptions have no next step.

Dunning. The attempts at an invoice are made at its due time (the period's start), then `dunning_days[i]`
days after it (default 1, 3 and 5: four attempts). A failed attempt with one left makes the subscription
`past_due`; the last failure makes the invoice `uncollectible` and the subscription `unpaid` or `canceled`
(the merchant's `on_final_failure`).

The first period of a subscription without a trial is charged at creation; the subscription is `active`
from the start (Stripe would say `incomplete`, which Tender's statuses do not have), and a failed first
charge makes it `past_due` and dunning follows as for any renewal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from tender.domain.recurring import FinalFailure, InvoiceStatus, SubscriptionStatus


class Step(StrEnum):
    RENEW = "renew"
    RETRY = "retry"
    CANCEL = "cancel"
    WAIT = "wait"  # a payment is in flight
    NONE = "none"  # canceled or unpaid: nothing more


ENDED = frozenset({SubscriptionStatus.CANCELED, SubscriptionStatus.UNPAID})


def attempt_due(due: datetime, dunning_days: Sequence[int], attempt: int) -> datetime | None:
    """When attempt `attempt` (1-based) at an invoice due at `due` is made; None past the last one."""
    if attempt < 1 or attempt > len(dunning_days) + 1:
        return None
    if attempt == 1:
        return due
    return due + timedelta(days=dunning_days[attempt - 2])


def next_step(
    status: SubscriptionStatus,
    *,
    cancel_at_period_end: bool,
    invoice_status: InvoiceStatus | None,
    payment_in_flight: bool,
) -> Step:
    """What the subscription does when it is next due, given its latest invoice."""
    if status in ENDED:
        return Step.NONE
    if invoice_status == InvoiceStatus.OPEN:
        return Step.WAIT if payment_in_flight else Step.RETRY
    if cancel_at_period_end:
        return Step.CANCEL
    return Step.RENEW


@dataclass(frozen=True, slots=True)
class PaymentEnd:
    """What an invoice's payment that ended makes of the invoice and its subscription."""

    invoice_status: InvoiceStatus
    subscription_status: SubscriptionStatus
    next_attempt: datetime | None  # the next dunning retry (past_due), else None


def after_payment(
    status: SubscriptionStatus,
    *,
    succeeded: bool,
    due: datetime,
    attempt: int,
    dunning_days: Sequence[int],
    on_final_failure: FinalFailure,
) -> PaymentEnd:
    """The invoice due at `due` had its attempt `attempt` end (`succeeded` or not): the invoice's and the
    subscription's new statuses, and when the next retry is. A subscription canceled meanwhile stays so (its
    invoice is paid if the money came, void otherwise: nothing retries it)."""
    if succeeded:
        new = status if status == SubscriptionStatus.CANCELED else SubscriptionStatus.ACTIVE
        return PaymentEnd(InvoiceStatus.PAID, new, None)
    if status == SubscriptionStatus.CANCELED:
        return PaymentEnd(InvoiceStatus.VOID, status, None)
    retry = attempt_due(due, dunning_days, attempt + 1)
    if retry is not None:
        return PaymentEnd(InvoiceStatus.OPEN, SubscriptionStatus.PAST_DUE, retry)
    final = SubscriptionStatus.CANCELED if on_final_failure == FinalFailure.CANCEL else SubscriptionStatus.UNPAID
    return PaymentEnd(InvoiceStatus.UNCOLLECTIBLE, final, None)


@dataclass(frozen=True, slots=True)
class CustomerBilling:
    """What billing needs of a customer: its default method, its clock (and the clock's time), and its
    merchant's billing settings."""

    customer_id: str
    default_payment_method: str | None
    test_clock_id: str | None
    clock_time: datetime | None  # the clock's frozen_time; None: wall clock
    dunning_days: list[int]
    on_final_failure: FinalFailure
