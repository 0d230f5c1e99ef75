"""Double-entry journal entries for every money movement: pure rules, no I/O.

Signs: a line's amount is positive for a debit and negative for a credit; every entry sums to zero. The
platform holds an asset (what each processor owes it, `processor_receivable`) against liabilities (what it
owes each merchant, `merchant_pending` until the payable's date, then `merchant_available`) and its revenue
(`platform_fees`). Liabilities and revenue are credit-normal: their balance as shown is minus the sum.

- capture:    debit receivable (gross); credit merchant pending or available (net); credit fees (fee)
- refund:     debit merchant pending or available (refunded amount); credit receivable (refunded amount).
              The fee of the payment is not returned (Stripe's policy): the merchant bears the refund in full.
- settlement: debit merchant pending; credit merchant available (the net of the payables settled)
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from typing import Literal

EntryType = Literal["payment", "refund", "settlement"]
AccountKind = Literal[
    "merchant_pending", "merchant_available", "merchant_paid_out", "platform_fees", "processor_receivable"
]
CREDIT_NORMAL: frozenset[str] = frozenset(
    {"merchant_pending", "merchant_available", "merchant_paid_out", "platform_fees"}
)


class UnbalancedEntry(ValueError):
    pass


def merchant_account(merchant_id: str, bucket: Literal["pending", "available", "paid_out"], currency: str) -> str:
    return f"merchant:{merchant_id}:{bucket}:{currency}"


def fees_account(currency: str) -> str:
    return f"platform:fees:{currency}"


def receivable_account(processor: str, currency: str) -> str:
    return f"processor:{processor}:receivable:{currency}"


def account_kind(account_id: str) -> tuple[AccountKind, str, str]:
    """(kind, owner, currency) of an account id made by the functions above."""
    parts = account_id.split(":")
    match parts:
        case ["merchant", owner, "pending", currency]:
            return "merchant_pending", owner, currency
        case ["merchant", owner, "available", currency]:
            return "merchant_available", owner, currency
        case ["merchant", owner, "paid_out", currency]:
            return "merchant_paid_out", owner, currency
        case ["platform", "fees", currency]:
            return "platform_fees", "platform", currency
        case ["processor", owner, "receivable", currency]:
            return "processor_receivable", owner, currency
    raise ValueError(f"not a ledger account id: {account_id!r}")


@dataclass(frozen=True, slots=True)
class Line:
    account: str
    amount: int  # > 0 debit, < 0 credit


@dataclass(frozen=True, slots=True)
class Entry:
    id: str
    merchant_id: str
    type: EntryType
    source_id: str
    currency: str
    amount: int  # as the merchant sees it: gross, fee, net (a balance transaction)
    fee: int
    net: int
    available_on: date
    lines: tuple[Line, ...]

    def __post_init__(self) -> None:
        if sum(line.amount for line in self.lines) != 0:
            raise UnbalancedEntry(f"entry {self.id} does not balance: {self.lines}")
        if any(line.amount == 0 for line in self.lines):
            raise UnbalancedEntry(f"entry {self.id} has a zero line")
        if self.net != self.amount - self.fee:
            raise UnbalancedEntry(f"entry {self.id}: net {self.net} != amount {self.amount} - fee {self.fee}")


def _lines(*postings: tuple[str, int]) -> tuple[Line, ...]:
    """Postings merged per account, zero ones dropped (a 0% fee posts nothing to fees)."""
    totals: dict[str, int] = defaultdict(int)
    for account, amount in postings:
        totals[account] += amount
    return tuple(Line(a, v) for a, v in sorted(totals.items()) if v != 0)


def capture_entry(
    entry_id: str,
    *,
    merchant_id: str,
    payment_id: str,
    processor: str,
    currency: str,
    amount: int,
    fee: int,
    available: bool,
    available_on: date,
) -> Entry:
    bucket: Literal["pending", "available"] = "available" if available else "pending"
    return Entry(
        entry_id,
        merchant_id,
        "payment",
        payment_id,
        currency,
        amount,
        fee,
        amount - fee,
        available_on,
        _lines(
            (receivable_account(processor, currency), amount),
            (merchant_account(merchant_id, bucket, currency), -(amount - fee)),
            (fees_account(currency), -fee),
        ),
    )


def refund_entry(
    entry_id: str,
    *,
    merchant_id: str,
    refund_id: str,
    processor: str,
    currency: str,
    amount: int,
    from_available: bool,
    available_on: date,
) -> Entry:
    bucket: Literal["pending", "available"] = "available" if from_available else "pending"
    return Entry(
        entry_id,
        merchant_id,
        "refund",
        refund_id,
        currency,
        -amount,
        0,
        -amount,
        available_on,
        _lines(
            (merchant_account(merchant_id, bucket, currency), amount),
            (receivable_account(processor, currency), -amount),
        ),
    )


def settlement_entry(
    entry_id: str, *, merchant_id: str, settlement_id: str, currency: str, net: int, on: date
) -> Entry:
    """Moves `net` (the settled payables' sum, negative when refunds outweigh) from pending to available."""
    return Entry(
        entry_id,
        merchant_id,
        "settlement",
        settlement_id,
        currency,
        net,
        0,
        net,
        on,
        _lines(
            (merchant_account(merchant_id, "pending", currency), net),
            (merchant_account(merchant_id, "available", currency), -net),
        ),
    )
