"""The records services work with: plain data, one per stored object."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


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
    status: str
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
