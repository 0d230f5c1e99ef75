"""The processor interface and the classified outcome of every call.

A worker never interprets a processor's HTTP status codes or exceptions itself: each processor turns
what happened into an `Outcome`, and the services decide what that means for the payment.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from typing_extensions import TypeIs

# The outcome vocabulary is the domain's (domain/transitions.py decides what it means for a payment);
# re-exported here, where every processor reads it.
from tender.domain.outcomes import Outcome, ProcessorResult

# A processor's own record of a charge or refund, for reconciliation (domain/reconciliation.py compares them).
from tender.domain.reconciliation import LedgerRecord as ProcessorRecord

__all__ = [
    "AuthorizeRequest",
    "CardData",
    "InvalidNotification",
    "Notification",
    "Outcome",
    "Processor",
    "ProcessorRecord",
    "ProcessorResult",
    "RecordsUnavailable",
    "RegisteringProcessor",
    "SavedMethod",
]


@dataclass(frozen=True, slots=True)
class CardData:
    """The clear card, decrypted from the vault only for the duration of one processor call."""

    number: str
    exp_month: int
    exp_year: int
    cvc: str | None
    holder_name: str | None

    def __repr__(self) -> str:  # never let a card reach a log line or a traceback
        return f"CardData(last4={self.number[-4:]!r}, exp={self.exp_month:02d}/{self.exp_year})"


@dataclass(frozen=True, slots=True)
class SavedMethod:
    """A saved card a payment charges: Tender's id for it, and what processors made of it before, by processor
    name (payment_methods.processor_refs, e.g. {"stripe": {"customer": "cus_X", "payment_method": "pm_X"}}).
    A processor that needs objects of its own for it creates them once and answers them in
    ProcessorResult.saved_refs; the services remember them before anything is charged."""

    id: str
    refs: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class AuthorizeRequest:
    reference: str  # our attempt id: the processor's idempotency key and the key for look-ups
    payment_id: str
    amount: int
    currency: str
    capture: bool
    card: CardData | None = None  # a card payment
    # An alternative payment method's public view, e.g. {"type": "upi", "upi": {"vpa": ...}}: exactly one
    # of `card` and `method` is set.
    method: dict[str, Any] | None = None
    return_url: str | None = None
    # A registering processor's own id for this authorization (RegisteringProcessor), once registered.
    processor_reference: str | None = None
    # Merchant-initiated (MIT): the shopper is absent and the saved card has no CVC; the processor is told.
    off_session: bool = False
    saved: SavedMethod | None = None  # the saved card (pm_...) this charges, if one

    def __post_init__(self) -> None:
        if (self.card is None) == (self.method is None):
            raise ValueError("an authorization needs exactly one of card and method")


@dataclass(frozen=True, slots=True)
class Notification:
    """An inbound notification, verified: the processor's event id and what it says of one of our attempts."""

    event_id: str
    type: str
    reference: str  # our attempt id
    result: ProcessorResult
    payload: dict[str, Any]


class InvalidNotification(ValueError):
    """A notification whose signature or shape does not verify. Its message never carries the body."""


class RecordsUnavailable(RuntimeError):
    """A processor's records could not be read in full (unreachable, refused, an unreadable page): a
    reconciliation never compares against part of them. Its message never carries a response body."""


class Processor(Protocol):
    """Every call carries our attempt id as its idempotency key and never raises for network faults."""

    name: str

    async def authorize(self, request: AuthorizeRequest) -> ProcessorResult:
        """Authorize (and capture, when asked) a payment by card or by an alternative method."""
        ...

    async def lookup(self, reference: str) -> ProcessorResult:
        """What the processor knows of an authorization attempt: its outcome, NOT_FOUND, or TRANSIENT/UNKNOWN."""
        ...

    async def capture(self, reference: str, authorization: str, amount: int | None = None) -> ProcessorResult:
        """Capture `amount` (None: all) of the authorization made under attempt id `authorization`."""
        ...

    async def cancel(self, reference: str, authorization: str) -> ProcessorResult:
        """Void an uncaptured authorization (or one still waiting for the shopper)."""
        ...

    async def refund(self, reference: str, authorization: str, amount: int | None = None) -> ProcessorResult:
        """Refund `amount` (None: all that is left) of the captured authorization made under `authorization`;
        `reference` is the refund's id."""
        ...

    async def lookup_operation(self, reference: str) -> ProcessorResult:
        """A capture, cancel or refund by its own id: APPROVED, DECLINED, NOT_FOUND, or TRANSIENT."""
        ...

    def parse_notification(self, headers: Mapping[str, str], body: bytes) -> Notification:
        """Verify and read an inbound notification, or raise InvalidNotification."""
        ...

    async def list_records(self, start: datetime, end: datetime) -> list[ProcessorRecord]:
        """Every charge and refund the processor made in [start, end), all pages read; or RecordsUnavailable."""
        ...

    async def aclose(self) -> None: ...


@runtime_checkable
class RegisteringProcessor(Protocol):
    """A processor that names an authorization by its own id (Stripe's `pi_...`), not by Tender's attempt id.

    Register, then execute: `register` creates the authorization at the processor without charging anything and
    answers NOT_FOUND ("not executed yet") with its id as processor_reference; the services store that id with
    the attempt in their own transaction, and only then call `authorize` with `request.processor_reference` set.
    From then on Tender names the authorization by that id: `lookup(id)`, `capture(ref, id)`, `cancel(ref, id)`,
    `refund(ref, id)`, and an operation is looked up on it by `lookup_operation_on`."""

    async def register(self, request: AuthorizeRequest) -> ProcessorResult: ...

    async def lookup_operation_on(self, reference: str, operation: str, authorization: str) -> ProcessorResult:
        """Operation `reference` (capture | cancel | refund) on the authorization the processor calls
        `authorization`: APPROVED, DECLINED, NOT_FOUND, or TRANSIENT."""
        ...


def registers(processor: object) -> TypeIs[RegisteringProcessor]:
    """`isinstance(processor, RegisteringProcessor)`, answered once per class: a runtime-checkable Protocol walks
    its attributes on every check (about 5 % of the worker's CPU under load, issue 16)."""
    kind = type(processor)
    found = _REGISTERS.get(kind)
    if found is None:
        found = _REGISTERS[kind] = isinstance(processor, RegisteringProcessor)
    return found


_REGISTERS: dict[type, bool] = {}
