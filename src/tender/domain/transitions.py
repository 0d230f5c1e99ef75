"""What a processor's definitive answer means for a payment: one pure function, `decide`, shared by the worker's
pump and by inbound processor notifications (through services/payment_transitions.py, the one place that writes
a payment's status), so both paths agree and neither moves a status backwards.

`PaymentChange` is the payment's row after one step (a new status, or the same one with a new schedule), as
the services write it; `change_of` makes one from the payment as it is.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from tender.domain.bins import Funding
from tender.domain.models import Attempt, Payment
from tender.domain.outcomes import Outcome, ProcessorResult
from tender.domain.payments import PaymentStatus, can_transition

DEFINITIVE = frozenset({Outcome.APPROVED, Outcome.DECLINED, Outcome.ACTION_REQUIRED})

DECLINE_MESSAGES = {
    "generic_decline": "The card was declined.",
    "insufficient_funds": "The card has insufficient funds.",
    "lost_card": "The card was declined (reported lost).",
    "expired_card": "The card has expired.",
    "incorrect_cvc": "The card's security code is incorrect.",
    "authentication_failed": "The shopper did not complete 3-D Secure authentication.",
}


@dataclass(frozen=True, slots=True)
class PaymentChange:
    """A payment's row after one step. Written only where the status is still `expected_status` (and, for the
    pump, its lease still holds): an answer that arrives after the payment moved on changes nothing."""

    id: str
    expected_status: PaymentStatus  # the status the step was decided on
    status: PaymentStatus
    amount_captured: int
    failure_code: str | None
    decline_code: str | None
    failure_message: str | None
    next_action: dict[str, Any] | None
    processor_reference: str | None  # None keeps the stored one
    next_run_at: datetime | None  # the next step; None only in a final status
    last_error: str | None
    reset_tries: bool  # the work moved on: fresh tries, and its dead letters are resolved
    updated: datetime | None  # when it was written (set by the writer)
    card_funding: Funding | None = None  # the issuer's word on the card's funding (an approved authorization)
    # Failover: the processor now in charge (None keeps it). Only for an authorization nothing was charged by
    # (services/payment_operations.py); the previous processor's reference, if any, goes with it.
    processor: str | None = None
    held: bool = False  # waiting for a processor of its route to take it: this claim costs no retry try

    @property
    def moved(self) -> bool:
        """The status changed: events, and for a capture the money, follow."""
        return self.status != self.expected_status


def change_of(p: Payment, **fields: Any) -> PaymentChange:
    """The payment's row after this step: unchanged fields as they were, no schedule unless one is given."""
    change = PaymentChange(
        id=p.id,
        expected_status=p.status,
        status=p.status,
        amount_captured=p.amount_captured,
        failure_code=p.failure_code,
        decline_code=p.decline_code,
        failure_message=p.failure_message,
        next_action=p.next_action,
        processor_reference=None,
        next_run_at=None,
        last_error=None,
        reset_tries=False,
        updated=None,
    )
    return replace(change, **fields) if fields else change


def decide(
    p: Payment, attempt: Attempt, result: ProcessorResult, *, next_run_at: datetime | None = None
) -> PaymentChange | None:
    """The change a definitive `result` of `attempt` implies, with `attempt` updated to match; None when the
    result no longer applies to the payment's current status (a stale or repeated answer).

    `next_run_at` is when to look again if the result leaves the payment waiting on the processor's truth: for
    the shopper's result (requires_action), or after a refused capture or cancel, whose refusal may mean the
    authorization is not what Tender thinks (captured, voided): the look-up then applies what it really is."""
    if result.outcome not in DEFINITIVE:
        raise ValueError(f"not a definitive outcome: {result.outcome}")
    attempt.processor_reference = result.processor_reference or attempt.processor_reference
    attempt.failure_code, attempt.decline_code, attempt.message = (
        result.failure_code,
        result.decline_code,
        result.message,
    )
    status = PaymentStatus(p.status)
    match attempt.operation, result.outcome:
        case "authorize", Outcome.APPROVED:
            captured = result.captured or p.capture
            new = PaymentStatus.SUCCEEDED if captured else PaymentStatus.REQUIRES_CAPTURE
            if not can_transition(status, new):
                return None
            attempt.status = "approved"
            return change_of(
                p,
                status=new,
                amount_captured=_captured_amount(p, result) if captured else 0,
                next_action=None,
                **_NO_FAILURE,  # e.g. a refused cancel's `already_captured`: the truth is a success
                processor_reference=result.processor_reference,
                reset_tries=True,
                card_funding=result.funding,  # the issuer's word beats the BIN table (store/card_funding.py)
            )
        case "authorize", Outcome.DECLINED if status is PaymentStatus.REQUIRES_CAPTURE:
            # An authorization the processor no longer holds (voided, expired): nothing can be captured.
            return change_of(
                p,
                status=PaymentStatus.CANCELED,
                failure_code=result.failure_code or "authorization_voided",
                failure_message=result.message or "The processor no longer holds the authorization.",
                reset_tries=True,
            )
        case "authorize", Outcome.DECLINED:
            if not can_transition(status, PaymentStatus.FAILED):
                return None
            attempt.status = "declined"
            code = result.failure_code or "card_declined"
            return change_of(
                p,
                status=PaymentStatus.FAILED,
                failure_code=code,
                decline_code=result.decline_code,
                failure_message=result.message
                or DECLINE_MESSAGES.get(result.decline_code or code, "The card was declined."),
                next_action=None,
                processor_reference=result.processor_reference,
                reset_tries=True,
            )
        case "authorize", Outcome.ACTION_REQUIRED:
            if status is not PaymentStatus.PROCESSING:
                return None  # already waiting for the shopper, or past it
            attempt.status = "action_required"
            return change_of(
                p,
                status=PaymentStatus.REQUIRES_ACTION,
                next_action={"type": "redirect_to_url", "url": result.redirect_url},
                processor_reference=result.processor_reference,
                next_run_at=next_run_at,
                reset_tries=True,
            )
        case "capture", Outcome.APPROVED:
            if not can_transition(status, PaymentStatus.SUCCEEDED):
                return None
            attempt.status = "approved"
            return change_of(
                p,
                status=PaymentStatus.SUCCEEDED,
                amount_captured=attempt.amount or p.amount,
                reset_tries=True,
                **_NO_FAILURE,
            )
        case "cancel", Outcome.APPROVED:
            if not can_transition(status, PaymentStatus.CANCELED):
                return None
            attempt.status = "approved"
            return change_of(p, status=PaymentStatus.CANCELED, next_action=None, reset_tries=True)
        case (("capture" | "cancel"), Outcome.DECLINED):
            # The processor refused (the authorization expired, was voided, or was captured after all): the
            # payment keeps its status and says why, and its authorization is looked up at `next_run_at`.
            attempt.status = "declined"
            return change_of(
                p,
                failure_code=result.failure_code or f"{attempt.operation}_failed",
                failure_message=result.message or f"The processor refused the {attempt.operation}.",
                next_run_at=next_run_at,
                reset_tries=True,
            )
    return None


_NO_FAILURE: dict[str, Any] = {"failure_code": None, "decline_code": None, "failure_message": None}


def _captured_amount(p: Payment, result: ProcessorResult) -> int:
    """What the processor says it captured (a capture Tender did not make, found by a look-up), else all."""
    told = result.amount_captured
    return told if told is not None and 0 < told <= p.amount else p.amount
