"""The records services work with: plain data, one per stored object."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, TypeVar

from tender.domain.payments import PaymentStatus

E = TypeVar("E", bound=StrEnum)
_MEMBERS: dict[type[StrEnum], dict[str, StrEnum]] = {}


def member(kind: type[E], value: str) -> E:
    """`kind(value)` for a status read from a row, by one dict look-up: Enum's own call path costs about
    a microsecond, paid for every record read. An unknown value raises ValueError as `kind(value)` does."""
    members = _MEMBERS.get(kind)
    if members is None:
        members = _MEMBERS[kind] = {m.value: m for m in kind}
    found = members.get(value)
    return found if found is not None else kind(value)  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class Merchant:
    id: str
    name: str
    created: datetime


@dataclass(slots=True)
class Payment:
    id: str
    merchant_id: str
    amount: int
    currency: str
    status: PaymentStatus
    capture: bool
    amount_captured: int
    amount_refunded: int
    payment_method: dict[str, Any]
    card_id: str | None
    reference: str | None
    description: str | None
    metadata: dict[str, str]
    customer: str | None
    return_url: str | None
    failure_code: str | None
    decline_code: str | None
    failure_message: str | None
    next_action: dict[str, Any] | None
    processor: str
    created: datetime
    updated: datetime
    processor_reference: str | None = None
    checkout_session_id: str | None = None  # made on the hosted checkout page of this session
    # The processors this payment may run on, in order (routing); `processor` is the one in charge now.
    # None: `processor` only (forced by the request, or accepted before routing existed).
    route: list[str] | None = None
    # Recurring payments (issue 15): the invoice this payment pays, the saved method (pm_...) it charges,
    # whether the merchant initiated it without the shopper (no CVC), and "off_session" to save its card.
    invoice_id: str | None = None
    payment_method_id: str | None = None
    off_session: bool = False
    setup_future_usage: str | None = None

    def __post_init__(self) -> None:
        # Rows from the database carry the text; one enum from here on (a StrEnum: JSON and SQL see the text).
        self.status = member(PaymentStatus, self.status)


@dataclass(frozen=True, slots=True)
class VaultCard:
    """A vault row as the worker reads it: still ciphertext."""

    id: str
    number_ct: bytes | None  # None once its one-off payment is final (never read again then)
    cvc_ct: bytes | None
    exp_month: int
    exp_year: int
    holder_name: str | None


@dataclass(slots=True)
class Attempt:
    """One processor operation on a payment; its id is the processor's idempotency key and look-up key."""

    id: str
    payment_id: str
    operation: str  # authorize | capture | cancel
    processor: str
    status: str = "pending"  # pending | approved | declined | action_required
    amount: int | None = None  # capture: how much (None: all)
    calls: int = 0
    maybe_sent: bool = False  # a call went unanswered: it may have reached the processor
    processor_reference: str | None = None
    failure_code: str | None = None
    decline_code: str | None = None
    message: str | None = None
    last_error: str | None = None

    @property
    def is_open(self) -> bool:
        return self.status in ("pending", "action_required")


def _as(kind: type[StrEnum], record: object, name: str) -> None:
    """Rows from the database carry a status as text: one enum from here on (frozen records set it once)."""
    object.__setattr__(record, name, member(kind, getattr(record, name)))


class CheckoutStatus(StrEnum):
    OPEN = "open"
    COMPLETE = "complete"  # its payment succeeded
    EXPIRED = "expired"  # past expires_at, or expired by the merchant


@dataclass(frozen=True, slots=True)
class CheckoutSession:
    id: str
    merchant_id: str
    amount: int
    currency: str
    reference: str
    description: str | None
    success_url: str
    cancel_url: str
    url: str  # the hosted page
    payment_method_types: list[str]
    status: CheckoutStatus
    payment_id: str | None  # the latest payment made on the page (a declined one may be followed by another)
    expires_at: datetime
    created: datetime
    updated: datetime
    # Hosted by a processor (Stripe Checkout) rather than Tender's page: its name, and its own session id once
    # registered (None while registering).
    processor: str | None = None
    processor_session_id: str | None = None
    # Recurring (issue 15): "payment" (one payment) or "subscription" (the card entered is saved to `customer_id`,
    # made at payment time when None, and starts the subscription `subscription_data` describes: amount, currency,
    # interval, interval_count, trial_days, metadata; `subscription_id` once started). In payment mode,
    # setup_future_usage "off_session" saves the card paid with to `customer_id`.
    mode: str = "payment"
    customer_id: str | None = None
    setup_future_usage: str | None = None
    subscription_data: dict[str, Any] | None = None
    subscription_id: str | None = None

    def __post_init__(self) -> None:
        _as(CheckoutStatus, self, "status")


@dataclass(frozen=True, slots=True)
class Event:
    """One change of one object, as recorded in the change's transaction (the outbox)."""

    id: str
    merchant_id: str
    type: str
    object_id: str
    sequence: int  # 1, 2, 3... per object, in the order the changes happened
    data: dict[str, Any]  # {"object": the object as it was right after the change}
    created: datetime


@dataclass(frozen=True, slots=True)
class WebhookEndpoint:
    id: str
    merchant_id: str
    url: str
    description: str | None
    events: list[str]  # ["*"] or event types
    enabled: bool
    disabled_reason: str | None  # "failing" when Tender disabled it; None when the merchant did
    secret_ct: bytes  # encrypted by the vault key: it must be read back to sign
    previous_secret_ct: bytes | None  # a rotated-out secret, signing beside the new one until it expires
    previous_secret_expires: datetime | None
    failing_since: datetime | None
    created: datetime
    updated: datetime


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class WebhookDelivery:
    """One event for one endpoint."""

    id: str
    merchant_id: str
    endpoint_id: str
    event_id: str
    status: DeliveryStatus
    tries: int  # claims since created or redelivered
    next_run_at: datetime | None
    retry_from: datetime  # the retry window starts here (created, or redelivered)
    attempts: int  # requests sent, ever
    last_status_code: int | None
    last_error: str | None
    last_attempt_at: datetime | None
    created: datetime
    updated: datetime
    event_type: str | None = None  # read with the event when listed

    def __post_init__(self) -> None:
        _as(DeliveryStatus, self, "status")


@dataclass(frozen=True, slots=True)
class WebhookAttempt:
    """One request sent for a delivery."""

    delivery_id: str
    attempted: datetime
    status_code: int | None  # None: no answer
    latency_ms: int
    error: str | None


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """A delivery with every request made for it, oldest first: what the API lists."""

    delivery: WebhookDelivery
    attempts: list[WebhookAttempt]


class DeadLetterStatus(StrEnum):
    OPEN = "open"
    RETRIED = "retried"  # an operator gave the work fresh tries
    RESOLVED = "resolved"  # the work got done after all


class DeadLetterKind(StrEnum):
    PAYMENT = "payment"
    REFUND = "refund"
    WEBHOOK_DELIVERY = "webhook_delivery"
    PROCESSOR_EVENT = "processor_event"  # an inbound event Tender could not book by itself (an operator's)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Work that exhausted its automatic retries."""

    id: str
    kind: str  # a DeadLetterKind's value (text: a row of a kind this version does not know stays readable)
    object_id: str
    operation: str
    status: DeadLetterStatus
    tries: int
    last_error: str | None
    history: list[dict[str, Any]]
    created: datetime
    updated: datetime
    processor: str | None = None  # the processor the work was at (payments, refunds); None: not a processor's

    def __post_init__(self) -> None:
        _as(DeadLetterStatus, self, "status")
