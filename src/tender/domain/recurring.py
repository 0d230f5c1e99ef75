"""Recurring payments' records: customers, saved payment methods, test clocks, subscriptions and invoices.

One record per stored row (migration 0016), with the row's column names, so a store module can read
`Record(**row)` and list its columns from `dataclasses.fields`. Statuses are StrEnums (JSON and SQL see the
text). Period arithmetic is domain/periods.py's.

Billing settings live on the `merchants` row (columns `dunning_days int[]` default {1,3,5} and
`on_final_failure` 'unpaid'|'cancel' default 'unpaid'), not in a table of their own; a subscription copies
both when it is created, so a later change of the setting leaves running subscriptions as they were.

A saved card (SavedPaymentMethod) keeps its number in the vault (`card_id`, a vault_cards row whose cvc_ct is
NULL: a saved card never keeps its CVC); the record holds only its public view.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from tender.domain.models import member

# Stripe's limits for a customer's free text, which merchants already design around.
MAX_EMAIL_LENGTH = 512
MAX_NAME_LENGTH = 256
MAX_CLOCK_NAME_LENGTH = 300
DEFAULT_DUNNING_DAYS = (1, 3, 5)


class TestClockStatus(StrEnum):
    __test__ = False  # not a pytest class, whatever its name says

    READY = "ready"
    ADVANCING = "advancing"  # an advance is running the objects' due work


class Interval(StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    YEAR = "year"


class SubscriptionStatus(StrEnum):
    TRIALING = "trialing"
    ACTIVE = "active"
    PAST_DUE = "past_due"  # a renewal failed; dunning retries it
    CANCELED = "canceled"
    UNPAID = "unpaid"  # dunning gave up; the invoice is uncollectible


class InvoiceStatus(StrEnum):
    OPEN = "open"
    PAID = "paid"
    UNCOLLECTIBLE = "uncollectible"
    VOID = "void"


class FinalFailure(StrEnum):
    """What the last failed dunning retry makes of a subscription."""

    UNPAID = "unpaid"
    CANCEL = "cancel"


def _as(kind: type[StrEnum], record: object, name: str) -> None:
    object.__setattr__(record, name, member(kind, getattr(record, name)))


@dataclass(frozen=True, slots=True)
class BillingSettings:
    """A merchant's billing settings (columns of `merchants`)."""

    dunning_days: tuple[int, ...] = DEFAULT_DUNNING_DAYS  # retries this many days after the period's due time
    on_final_failure: FinalFailure = FinalFailure.UNPAID

    def __post_init__(self) -> None:
        object.__setattr__(self, "dunning_days", tuple(self.dunning_days))
        _as(FinalFailure, self, "on_final_failure")


@dataclass(frozen=True, slots=True)
class TestClock:
    __test__ = False

    id: str
    merchant_id: str
    name: str | None
    frozen_time: datetime
    status: TestClockStatus
    created: datetime
    updated: datetime

    def __post_init__(self) -> None:
        _as(TestClockStatus, self, "status")


@dataclass(frozen=True, slots=True)
class Customer:
    id: str
    merchant_id: str
    email: str | None
    name: str | None
    metadata: dict[str, str]
    default_payment_method: str | None  # a pm_ id
    test_clock_id: str | None  # lives on this clock's time, and so does everything it owns
    deleted: datetime | None  # deleted customers are kept (their payments name them) but not found
    created: datetime
    updated: datetime


@dataclass(frozen=True, slots=True)
class SavedPaymentMethod:
    id: str
    merchant_id: str
    customer_id: str | None  # None: tokenized, not attached (yet)
    card_id: str  # vault_cards row (cvc_ct NULL)
    type: str  # "card"
    brand: str
    last4: str
    exp_month: int
    exp_year: int
    funding: str
    fingerprint: str  # the vault's keyed fingerprint: the same card twice has the same one, per merchant
    created: datetime
    updated: datetime
    # What processors made of it, created once and remembered: {"stripe": {"customer", "payment_method"}}.
    processor_refs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Subscription:
    id: str
    merchant_id: str
    customer_id: str
    payment_method_id: str | None  # None: the customer's default at charge time
    amount: int
    currency: str
    interval: Interval
    interval_count: int
    status: SubscriptionStatus
    billing_anchor: datetime  # periods follow the calendar from here (domain/periods.py)
    current_period_start: datetime
    current_period_end: datetime
    trial_end: datetime | None
    cancel_at_period_end: bool
    canceled_at: datetime | None
    ended_at: datetime | None
    next_amount: int | None  # applies from the next period
    on_final_failure: FinalFailure
    dunning_days: list[int]
    latest_invoice_id: str | None
    reference: str | None
    metadata: dict[str, str]
    test_clock_id: str | None
    clock_due_at: datetime | None  # on a clock: when due, in clock time
    next_run_at: datetime | None  # off a clock: when the wall-clock pump takes it (always None on a clock)
    created: datetime
    updated: datetime

    def __post_init__(self) -> None:
        _as(Interval, self, "interval")
        _as(SubscriptionStatus, self, "status")
        _as(FinalFailure, self, "on_final_failure")


@dataclass(frozen=True, slots=True)
class Invoice:
    id: str
    merchant_id: str
    subscription_id: str
    customer_id: str
    amount_due: int
    amount_paid: int
    currency: str
    status: InvoiceStatus
    period_start: datetime
    period_end: datetime
    payment_id: str | None  # the latest payment trying to pay it
    attempt_count: int
    next_payment_attempt: datetime | None
    created: datetime
    updated: datetime

    def __post_init__(self) -> None:
        _as(InvoiceStatus, self, "status")
