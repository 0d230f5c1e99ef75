"""The classified outcome of every processor call.

A worker never interprets a processor's HTTP status codes or exceptions itself: each processor turns
what happened into an `Outcome` (processors/), and domain/transitions.py decides what it means for a payment.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from tender.domain.bins import Funding


class Outcome(StrEnum):
    APPROVED = "approved"
    DECLINED = "declined"  # final; never retried
    ACTION_REQUIRED = "action_required"  # the shopper must act (3-D Secure, an APM approval page)
    TRANSIENT = "transient"  # the processor certainly did nothing (5xx, refused connection): retry
    UNKNOWN = "unknown"  # the request may have been applied (timeout, dropped answer): look it up first
    NOT_FOUND = "not_found"  # a look-up found no record of the reference: it never arrived


@dataclass(frozen=True, slots=True)
class ProcessorResult:
    outcome: Outcome
    processor_reference: str | None = None
    failure_code: str | None = None
    decline_code: str | None = None
    message: str | None = None
    redirect_url: str | None = None
    captured: bool = False
    # An authorization's look-up: how much of it the processor has captured (None: not said). A capture Tender
    # did not make itself (a cancel refused as already captured) is booked for this amount, not the authorized one.
    amount_captured: int | None = None
    # An authorization's card funding as the issuer knows it (credit, debit, prepaid); None if not told.
    # It overrides Tender's BIN table: the fee and the payable's date follow it.
    funding: Funding | None = None
    # A registration that created the processor's own objects for a saved card (a customer and payment method
    # at Stripe): to be remembered on the saved method, with the registration, before anything is charged.
    saved_refs: dict[str, Any] | None = None
