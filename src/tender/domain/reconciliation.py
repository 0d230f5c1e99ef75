"""Reconciliation: Tender's records of a day at one processor against that processor's own, compared.

Pure: the services read both sides (store/reconciliations.py, a processor's `list_records`) and this module
decides what matches. Both sides are read as `LedgerRecord`s of two kinds, charges (an authorization attempt:
its amount, what became of it, how much was captured) and refunds, with a status in one shared vocabulary
(`ChargeStatus`, `RefundStatus`), so the table of what agrees with what is one small function with a table test.

Matching is by the processor's own id that Tender stored (processor_reference), else by Tender's attempt or refund
id (the simulator keeps it as its reference; Stripe in the PaymentIntent's or Refund's metadata).

Which day a record belongs to: each side is read over the business day (Settings.business_timezone, as
settlement's days) widened by a margin at both ends, so a charge Tender wrote at 23:59:59.9 and the processor at
00:00:00.1 still meet (services/reconciliation.py reads further where Tender's answers came later, and looks up
older Tender records a processor's record names); a pair matches if either of its records falls in the day, and an
unpaired record is reported only if it falls in the day itself (the day before or after reports it otherwise).

Only what moved or may move money is ever "missing": a charge that is succeeded, authorized, pending or waiting
for the shopper, a refund that is succeeded or pending. A decline, a void, a failed refund or a registration
never confirmed (a Stripe PaymentIntent without a charge) found on one side only charged nothing on either.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from enum import StrEnum
from typing import Any

RECONCILIATION = "rec"  # the id prefix of a reconciliation run


class RecordKind(StrEnum):
    CHARGE = "charge"
    REFUND = "refund"


class ChargeStatus(StrEnum):
    SUCCEEDED = "succeeded"  # captured (some or all)
    AUTHORIZED = "authorized"  # approved, not captured
    ACTION_REQUIRED = "action_required"  # waiting for the shopper (3-D Secure, an APM page)
    PENDING = "pending"  # in flight: the outcome is not known yet
    NOT_SENT = "not_sent"  # Tender's only: pending, and no call so far can have reached the processor
    DECLINED = "declined"
    CANCELED = "canceled"  # voided before capture
    INCOMPLETE = "incomplete"  # registered at the processor, never confirmed: not a charge


class RefundStatus(StrEnum):
    SUCCEEDED = "succeeded"
    PENDING = "pending"
    FAILED = "failed"
    NOT_SENT = "not_sent"  # Tender's only, as for a charge


def tender_refund_status(status: str, *, maybe_sent: bool = True) -> RefundStatus:
    """A Tender refund's status for reconciliation (a pending one never possibly sent is NOT_SENT)."""
    if status == "pending" and not maybe_sent:
        return RefundStatus.NOT_SENT
    return RefundStatus(status)


class FindingKind(StrEnum):
    MISSING_IN_TENDER = "missing_in_tender"
    MISSING_AT_PROCESSOR = "missing_at_processor"
    MISMATCHED = "mismatched"


# Nothing was charged: one of these agrees with any other (a PaymentIntent canceled by Stripe is a decline to
# Tender), and one found on one side only is not missing.
NOT_CHARGED = frozenset({ChargeStatus.DECLINED, ChargeStatus.CANCELED, ChargeStatus.INCOMPLETE})
_MOVED_NOTHING = frozenset({*NOT_CHARGED, ChargeStatus.NOT_SENT, RefundStatus.FAILED})


@dataclass(frozen=True, slots=True)
class LedgerRecord:
    """One charge or refund as one side knows it.

    `reference` is Tender's id (attempt id for a charge, refund id for a refund; on the processor's side None
    when it names none: made elsewhere); `processor_id` the processor's id for it (`sim_...`, `pi_...`,
    `re_...`; on Tender's side None until known). `payment` is Tender's payment (Tender's side only); `charge`
    is a refund's charge at the processor, when known."""

    kind: RecordKind
    reference: str | None
    processor_id: str | None
    amount: int
    currency: str
    status: str  # a ChargeStatus for a charge, a RefundStatus for a refund
    created: datetime
    amount_captured: int = 0
    payment: str | None = None
    charge: str | None = None
    # Tender's only: when the processor's answer was recorded (the attempt finished, the refund last changed);
    # the processor's own record is no later than that.
    answered: datetime | None = None


@dataclass(frozen=True, slots=True)
class Difference:
    field: str  # amount | currency | status | amount_captured
    tender: Any
    processor: Any

    def view(self) -> dict[str, Any]:
        return {"field": self.field, "tender": self.tender, "processor": self.processor}


@dataclass(frozen=True, slots=True)
class Finding:
    kind: FindingKind
    record: LedgerRecord  # Tender's record when it has one, else the processor's
    processor_id: str | None
    differences: tuple[Difference, ...] = ()

    def view(self) -> dict[str, Any]:
        """The finding as the CLI's --json and the API show it."""
        r = self.record
        view: dict[str, Any] = {
            "type": r.kind.value,
            "reference": r.reference,
            "processor_id": self.processor_id,
            "payment": r.payment,
            "amount": r.amount,
            "currency": r.currency,
            "status": r.status,
        }
        if self.kind is FindingKind.MISMATCHED:
            view["differences"] = [d.view() for d in self.differences]
        return view


@dataclass(frozen=True, slots=True)
class Report:
    processor: str
    day: date
    matched: int = 0
    findings: tuple[Finding, ...] = field(default_factory=tuple)

    def of(self, kind: FindingKind) -> list[dict[str, Any]]:
        return [f.view() for f in self.findings if f.kind is kind]

    @property
    def clean(self) -> bool:
        return not self.findings


class RunTrigger(StrEnum):
    CLI = "cli"  # `tender reconcile`
    WORKER = "worker"  # the daily run (one per processor and day)
    DASHBOARD = "dashboard"  # an operator, from the dashboard


class RunStatus(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"  # the processor's records could not be read: nothing was compared


@dataclass(slots=True)
class ReconciliationRun:
    """A stored run (reconciliation_runs) and its figures; the findings are their JSON views."""

    id: str
    processor: str
    day: date
    trigger: RunTrigger
    status: RunStatus
    tries: int
    matched: int
    missing_in_tender: list[dict[str, Any]]
    missing_at_processor: list[dict[str, Any]]
    mismatched: list[dict[str, Any]]
    error: str | None
    created: datetime
    started: datetime
    finished: datetime | None

    def __post_init__(self) -> None:
        self.trigger = RunTrigger(self.trigger)
        self.status = RunStatus(self.status)


def day_bounds(day: date, tz: tzinfo) -> tuple[datetime, datetime]:
    """The business day `day` in time zone `tz` as a UTC [start, end) (23 or 25 hours across a DST change)."""
    start = datetime.combine(day, time(0), tzinfo=tz)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz)
    return start.astimezone(UTC), end.astimezone(UTC)


def tender_charge_status(attempt_status: str, payment_status: str, *, maybe_sent: bool = True) -> ChargeStatus | None:
    """What Tender's authorize attempt says happened at its processor; None when the processor never processed
    it (`not_processed`: the payment failed over), so it is not on that processor's books at all. A pending
    attempt none of whose calls can have reached the processor (`maybe_sent` false) is NOT_SENT: not missing
    there if absent, yet paired if the processor has it after all (a call in flight as the run reads).

    The attempt says whether the processor answered; for an approved one the payment says what followed."""
    match attempt_status:
        case "not_processed":
            return None
        case "pending":
            return ChargeStatus.PENDING if maybe_sent else ChargeStatus.NOT_SENT
        case "declined":
            return ChargeStatus.DECLINED
        case "action_required":
            if payment_status == "requires_action":
                return ChargeStatus.ACTION_REQUIRED
            if payment_status in ("failed", "canceled"):  # the shopper never finished; voided at the processor
                return ChargeStatus.CANCELED
            return _after_approval(payment_status)
        case "approved":
            return _after_approval(payment_status)
    raise ValueError(f"unknown attempt status {attempt_status!r}")


def _after_approval(payment_status: str) -> ChargeStatus:
    match payment_status:
        case "succeeded":
            return ChargeStatus.SUCCEEDED
        case "requires_capture":
            return ChargeStatus.AUTHORIZED
        case "canceled":
            return ChargeStatus.CANCELED
        case "failed":
            return ChargeStatus.DECLINED
    return ChargeStatus.PENDING  # processing: an operation still in flight


def statuses_agree(kind: RecordKind, tender: str, processor: str) -> bool:
    """Whether Tender's status of a record and the processor's say the same thing about money."""
    if tender == processor:
        return True
    if kind is RecordKind.CHARGE:
        return tender in NOT_CHARGED and processor in NOT_CHARGED
    return False


def differences(tender: LedgerRecord, processor: LedgerRecord) -> tuple[Difference, ...]:
    """How a pair of records disagrees (empty: they match): amount, currency, status, and for a charge both
    sides call succeeded, the amount captured."""
    found: list[Difference] = []
    if tender.amount != processor.amount:
        found.append(Difference("amount", tender.amount, processor.amount))
    if tender.currency.upper() != processor.currency.upper():
        found.append(Difference("currency", tender.currency.upper(), processor.currency.upper()))
    if not statuses_agree(tender.kind, tender.status, processor.status):
        found.append(Difference("status", tender.status, processor.status))
    elif (
        tender.kind is RecordKind.CHARGE
        and tender.status == ChargeStatus.SUCCEEDED
        and tender.amount_captured != processor.amount_captured
    ):
        found.append(Difference("amount_captured", tender.amount_captured, processor.amount_captured))
    return tuple(found)


def _moved_money(record: LedgerRecord) -> bool:
    return record.status not in _MOVED_NOTHING


def reconcile(
    processor: str,
    day: date,
    window: tuple[datetime, datetime],
    tender: Sequence[LedgerRecord],
    theirs: Iterable[LedgerRecord],
) -> Report:
    """Compare both sides' records (each read over the day's `window` widened by a margin, module docstring)."""
    start, end = window

    def in_day(r: LedgerRecord) -> bool:
        return start <= r.created < end

    by_reference: dict[tuple[RecordKind, str], LedgerRecord] = {}
    by_processor_id: dict[tuple[RecordKind, str], LedgerRecord] = {}
    for record in tender:
        if record.reference is not None:
            by_reference[(record.kind, record.reference)] = record
        if record.processor_id is not None:
            by_processor_id.setdefault((record.kind, record.processor_id), record)
    paired: set[int] = set()  # id() of Tender's records already paired
    matched = 0
    findings: list[Finding] = []
    for record in theirs:
        # The processor's id first: Tender stored it, so it names exactly one record; then Tender's own id, unless
        # that record stored another processor id (a Stripe registration whose answer was lost left an orphan
        # PaymentIntent with the same metadata: never confirmed, it is not a charge).
        ours = by_processor_id.get((record.kind, record.processor_id)) if record.processor_id else None
        if ours is None and record.reference is not None:
            ours = by_reference.get((record.kind, record.reference))
            if ours is not None and ours.processor_id not in (None, record.processor_id):
                ours = None
        if ours is not None and id(ours) in paired:
            ours = None  # a second record claiming the same Tender record: reported on its own
        if ours is None:
            if in_day(record) and _moved_money(record):
                findings.append(Finding(FindingKind.MISSING_IN_TENDER, record, record.processor_id))
            continue
        paired.add(id(ours))
        if not (in_day(record) or in_day(ours)):
            continue
        diff = differences(ours, record)
        if diff:
            findings.append(Finding(FindingKind.MISMATCHED, ours, record.processor_id, diff))
        else:
            matched += 1
    for ours in tender:
        if id(ours) not in paired and in_day(ours) and _moved_money(ours):
            findings.append(Finding(FindingKind.MISSING_AT_PROCESSOR, ours, ours.processor_id))
    return Report(processor, day, matched, tuple(findings))
