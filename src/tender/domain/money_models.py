"""The records of money after capture: refunds, payables, settlements, balance transactions, balances, fee
plans as set, and what the ledger's checks find. Plain data, no I/O: store/ returns them, services and the
presenters (services/objects.py) take them. Payments, merchants and the other records are in domain/models.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Any, Literal

from tender.domain.fees import FeePlan, PayableStatus

PayableType = Literal["payment", "refund"]
TransactionType = Literal["payment", "refund", "settlement"]
# Where a balance transaction's money is held now (store/ledger.py `entry_statuses` says how it is decided).
TransactionStatus = Literal["pending", "available"]


class RefundStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Refund:
    id: str
    merchant_id: str
    payment_id: str
    amount: int
    currency: str
    status: RefundStatus
    reason: str | None
    metadata: dict[str, str]
    failure_code: str | None
    failure_message: str | None
    processor: str
    created: datetime
    updated: datetime
    processor_reference: str | None = None
    calls: int = 0  # refund calls made so far, over all claims
    maybe_sent: bool = False  # a call may have reached the processor: look it up before anything else
    last_error: str | None = None

    def __post_init__(self) -> None:
        # Rows carry the text; one enum from here on (a StrEnum: JSON and SQL see the same text).
        object.__setattr__(self, "status", RefundStatus(self.status))


@dataclass(frozen=True, slots=True)
class Payable:
    """What a capture earns the merchant (type `payment`) or a refund takes back (type `refund`: negative
    amount and net, no fee)."""

    id: str
    merchant_id: str
    type: PayableType
    payment_id: str
    refund_id: str | None
    status: PayableStatus
    amount: int
    fee: int
    net: int
    currency: str
    payment_method: str  # the method's type: card, upi, ...
    funding: str
    payment_date: date
    settlement_id: str | None
    created: datetime
    paid_at: datetime | None


@dataclass(frozen=True, slots=True)
class CapturedPayment:
    """A captured payment that has no payable yet: what its payable and ledger entry are made from."""

    id: str
    merchant_id: str
    amount_captured: int
    currency: str
    payment_method: dict[str, Any]  # the public payment_method (type, card brand and funding, ...)
    processor: str


@dataclass(frozen=True, slots=True)
class Settlement:
    """One merchant's payables of one currency and payment date, paid out together."""

    id: str
    merchant_id: str
    currency: str
    date: date
    amount: int  # the sum of its payables' net
    payables: int  # how many
    created: datetime
    updated: datetime


@dataclass(frozen=True, slots=True)
class DueGroup:
    """Payables waiting for their funds that settle together: one merchant, currency and payment date."""

    merchant_id: str
    currency: str
    payment_date: date


@dataclass(frozen=True, slots=True)
class BalanceTransaction:
    """A journal entry as the merchant sees it, with where its money is held now."""

    id: str
    merchant_id: str
    type: TransactionType
    source_id: str  # the payment, refund or settlement
    currency: str
    amount: int
    fee: int
    net: int
    available_on: date
    created: datetime
    status: TransactionStatus


@dataclass(frozen=True, slots=True)
class AccountBalance:
    """One of a merchant's ledger accounts, as shown (credit-normal: minus the postings' sum)."""

    kind: str  # merchant_pending | merchant_available | ...
    currency: str
    amount: int


@dataclass(frozen=True, slots=True)
class Balance:
    """A merchant's money per currency: waiting for funds (pending) and available."""

    waiting_funds: dict[str, int] = field(default_factory=dict)
    available: dict[str, int] = field(default_factory=dict)

    @property
    def currencies(self) -> list[str]:
        return sorted({*self.waiting_funds, *self.available})


@dataclass(frozen=True, slots=True)
class BalanceLine:
    """One currency of `tender balance`: the ledger's balances beside the payables' sums by status."""

    currency: str
    waiting_funds: int = 0
    available: int = 0
    payables_waiting_funds: int = 0
    payables_paid: int = 0

    @property
    def matches(self) -> bool:
        return self.waiting_funds == self.payables_waiting_funds and self.available == self.payables_paid


@dataclass(frozen=True, slots=True)
class MerchantFeePlan:
    merchant_id: str
    plan: FeePlan
    default: bool  # the merchant has no plan of its own


# -- what `tender ledger verify` finds ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UnbalancedEntry:
    entry_id: str
    currency: str
    off: int


@dataclass(frozen=True, slots=True)
class DriftedAccount:
    """An account whose stored balance differs from the sum of its postings."""

    id: str
    stored: int
    postings: int


@dataclass(frozen=True, slots=True)
class BalanceMismatch:
    """A merchant, currency and bucket where the ledger's balance differs from the sum of payables' net."""

    merchant_id: str
    currency: str
    status: PayableStatus
    ledger: int
    payables: int


@dataclass(frozen=True, slots=True)
class LedgerTotals:
    entries: int
    lines: int
    accounts: int
    payables: int


@dataclass(frozen=True, slots=True)
class LedgerVerification:
    totals: LedgerTotals
    unbalanced_entries: list[UnbalancedEntry]
    entries_without_lines: list[str]
    drifted_accounts: list[DriftedAccount]
    balance_mismatches: list[BalanceMismatch]

    @property
    def balanced(self) -> bool:
        return not (self.unbalanced_entries or self.entries_without_lines or self.drifted_accounts
                    or self.balance_mismatches)  # fmt: skip
