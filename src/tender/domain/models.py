"""The records services work with: plain data, one per stored object."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tender.domain.payments import PaymentStatus


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

    def __post_init__(self) -> None:
        # Rows from the database carry the text; one enum from here on (a StrEnum: JSON and SQL see the text).
        self.status = PaymentStatus(self.status)


@dataclass(frozen=True, slots=True)
class PaymentChange:
    """A payment's row after one step of its processing (a processor's answer, a retry, a wait): unchanged
    fields as they were. Written only while the payment still has `expected_status`; a change whose
    `status` differs from it is a status change (events, payables...)."""

    id: str
    expected_status: PaymentStatus
    status: PaymentStatus
    amount_captured: int
    failure_code: str | None
    decline_code: str | None
    failure_message: str | None
    next_action: dict[str, Any] | None
    processor_reference: str | None = None  # None keeps the stored one
    next_run_at: datetime | None = None  # the next step; None only for a final status
    last_error: str | None = None
    reset_tries: bool = False  # the work advanced: the retry count starts again
    updated: datetime | None = None  # set when written
    card_funding: str | None = None  # an approved authorization's funding, as the processor says

    @classmethod
    def unchanged(cls, p: Payment) -> PaymentChange:
        """The payment as it is, with no next step: the start of every change (`dataclasses.replace`)."""
        return cls(
            id=p.id,
            expected_status=p.status,
            status=p.status,
            amount_captured=p.amount_captured,
            failure_code=p.failure_code,
            decline_code=p.decline_code,
            failure_message=p.failure_message,
            next_action=p.next_action,
        )

    @property
    def status_changed(self) -> bool:
        return self.status != self.expected_status


@dataclass(frozen=True, slots=True)
class VaultCard:
    """A vault row as the worker reads it: still ciphertext."""

    id: str
    number_ct: bytes
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
