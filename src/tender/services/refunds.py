"""Refunds: accepted at once (202, `pending`), executed through the processor by the worker's refund pump.

Accepting. Only a `succeeded` (captured) payment can be refunded, by at most what is left: the amount
captured minus what succeeded refunds took (`amount_refunded`) minus what pending refunds hold. The payment
row is locked while this is checked and the refund inserted, so concurrent requests queue and can never
together promise more than was captured; a pending refund reserves its amount until it is answered.

Executing (`RefundOperations`, run by the worker's refund pump on the generic batch pump, worker/pump.py: the
same guarantees as the payment pump's, services/payment_operations.py). A refund is
its own processor operation: its id is the processor's idempotency key and the key for look-ups. Claimed
under a lease, it is marked `maybe_sent` before its first call leaves; from then on it is looked up by its
id before anything else, and re-sent only under that same id when the processor has no record of it, so a
call lost in a timeout and its retry count once. A transient failure backs off with jitter; after
`max_tries` a dead letter (kind `refund`) is opened and the refund is only looked up, on the janitor's
schedule, until the processor answers or an operator retries: never failed on a guess. A decline is final:
`failed`, with the processor's code and message.

Money. The transaction that writes `succeeded` (only where our lease and the `pending` status still hold)
also adds the amount to the payment's `amount_refunded`, writes a refund payable (negative amount and net,
no fee) and its ledger entry, and records the events. If the payment's capture payable still waits for its
funds, the refund payable waits too, with the same `payment_date`, so the two settle together and the
entry debits the merchant's pending balance; if the capture was already paid out to the available balance,
the refund is taken from it at once (`paid`, today in the business time zone), and the available balance
may go negative. Fee policy: the payment's fee is not returned on a refund (as Stripe does): the merchant
bears the refunded amount in full, and the platform keeps the fee it earned on the capture.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from tender.domain import money
from tender.domain.ids import MAX_ID_LENGTH, REFUND, new_id
from tender.domain.models import DeadLetterKind
from tender.domain.money_models import Refund, RefundStatus
from tender.domain.payments import MAX_METADATA_KEYS, PaymentStatus, validate_metadata
from tender.domain.retry import DeadLetter, RetryPolicy
from tender.errors import (
    AmountTooLarge,
    ChargeAlreadyRefunded,
    InvalidRequest,
    NoSuchObject,
    NotFound,
    PaymentUnexpectedState,
)
from tender.processors.base import Outcome, ProcessorResult, registers
from tender.services import dead_letters, payables
from tender.services.objects import refund_object
from tender.services.pacing import Pacing, ProcessorCalls
from tender.services.processor_health import ProcessorHealth
from tender.store import attempts as attempt_store
from tender.store import dead_letters as dead_letter_store
from tender.store import events
from tender.store import payments as payment_store
from tender.store import refunds as store
from tender.store.db import Conn, Database, Page

log = logging.getLogger(__name__)

STATUSES = tuple(RefundStatus)
MAX_REASON_LENGTH = 500


@runtime_checkable
class RefundingProcessor(Protocol):
    """What the pump needs of a processor: a refund under our id, and a look-up of it by that id."""

    async def refund(self, reference: str, authorization: str, amount: int | None = None) -> ProcessorResult: ...

    async def lookup_operation(self, reference: str) -> ProcessorResult: ...


# -- accepting -----------------------------------------------------------------------------------------


class RefundCreate(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    payment: str = Field(max_length=MAX_ID_LENGTH, description="The id of the succeeded payment to refund.")
    amount: int | None = Field(default=None, description="Minor units; default: all that is left to refund.")
    reason: str | None = Field(
        default=None,
        max_length=MAX_REASON_LENGTH,
        description="Free text of at most 500 characters, e.g. requested_by_customer, duplicate, fraudulent.",
    )
    metadata: dict[str, Any] | None = Field(
        default=None,
        max_length=MAX_METADATA_KEYS,
        description="At most 50 keys of 1 to 40 characters, each value a string of at most 500 characters.",
    )


async def create_refund(conn: Conn, merchant_id: str, request: RefundCreate, *, now: datetime | None = None) -> Refund:
    """Check and insert a pending refund, due at once. Runs in the caller's transaction, which holds the
    payment's row lock until it commits."""
    now = now or datetime.now(UTC)
    payment = await payment_store.lock_payment(conn, request.payment, merchant_id)
    if payment is None:  # another merchant's payment is indistinguishable from a missing one
        raise NoSuchObject("payment: no such payment", param="payment")
    if payment.status != PaymentStatus.SUCCEEDED or payment.amount_captured <= 0:
        raise PaymentUnexpectedState(
            f"payment: only a succeeded (captured) payment can be refunded; this one is {payment.status}",
            param="payment",
        )
    left = payment.amount_captured - payment.amount_refunded - await store.pending_amount(conn, payment.id)
    if request.amount is None:
        if left <= 0:
            raise ChargeAlreadyRefunded(
                "payment: nothing is left to refund (refunded in full, or held by pending refunds)",
                param="payment",
            )
        amount = left
    else:
        amount = money.validate_amount(request.amount, payment.currency)
        if amount > left:
            raise AmountTooLarge(
                f"amount: at most {max(left, 0)} is left to refund"
                f" (captured {payment.amount_captured}, refunded {payment.amount_refunded},"
                f" pending {payment.amount_captured - payment.amount_refunded - left})",
                param="amount",
            )
    reason = request.reason
    if reason is not None and (not reason or not reason.isprintable()):
        raise InvalidRequest("reason: must be 1 to 500 printable characters", param="reason")
    refund = Refund(
        id=new_id(REFUND),
        merchant_id=merchant_id,
        payment_id=payment.id,
        amount=amount,
        currency=payment.currency,
        status=RefundStatus.PENDING,
        reason=reason,
        metadata=validate_metadata(request.metadata),
        failure_code=None,
        failure_message=None,
        processor=payment.processor,
        created=now,
        updated=now,
    )
    await store.insert(conn, refund)
    return refund


async def get_refund(db: Database, merchant_id: str, refund_id: str) -> Refund:
    async with db.connection() as conn:
        refund = await store.get(conn, merchant_id, refund_id)
    if refund is None:
        raise NotFound("No such refund.", param="id")
    return refund


async def list_refunds(
    db: Database, merchant_id: str, *, limit: int, starting_after: str | None, payment: str | None
) -> Page[Refund]:
    async with db.connection() as conn:
        return await store.list_(conn, merchant_id, limit=limit, starting_after=starting_after, payment_id=payment)


async def retry_dead_letter(conn: Conn, refund_id: str) -> bool:
    """An operator's retry: fresh tries, due at once. False if the refund is no longer pending."""
    return await store.schedule_now(conn, refund_id)


# -- executing -----------------------------------------------------------------------------------------


@dataclass(slots=True)
class RefundWork:
    """One claimed refund."""

    refund: Refund
    tries: int
    was_maybe_sent: bool  # a call of an earlier claim may have reached the processor: look it up first
    authorization_id: str | None
    # The processor's own id for that authorization (a RegisteringProcessor's, e.g. Stripe's pi_...).
    authorization_reference: str | None = None
    calls: int = 0  # refund calls made by this claim
    dead: bool = False  # retries exhausted: open a dead letter

    @property
    def id(self) -> str:
        return self.refund.id


class RefundOperations:
    """What the refund pump does with the refunds it claims: mark them maybe sent before any call (`prepare`),
    call or look them up (`run`; `failed` when that raised), and write the outcomes and their money (`write`)."""

    def __init__(
        self,
        processors: Mapping[str, object],
        *,
        retry: RetryPolicy | None = None,
        business_tz: tzinfo = UTC,
        health: ProcessorHealth | None = None,  # the circuit breaker, told how each call went
        pacing: Pacing | None = None,  # calls to one processor at a time, shared with the payment pump
    ) -> None:
        self._processors = processors
        self._calls = ProcessorCalls(pacing, health)  # paced, and noted for the breaker
        self._retry = retry or RetryPolicy()
        self._tz = business_tz

    async def report_calls(self) -> None:
        """Tell the circuit breaker how the calls since the last report went (services/pacing.py). A refund's
        circuit is its processor's, as the payment pump sees it."""
        await self._calls.report()

    async def prepare(self, conn: Conn, rows: Sequence[Mapping[str, Any]]) -> list[RefundWork]:
        """The claimed refunds' work, in the claim's transaction."""
        authorizations = await attempt_store.latest_authorizations(conn, [r["payment_id"] for r in rows])
        work = []
        for row in rows:
            authorization = authorizations.get(row["payment_id"])
            work.append(
                RefundWork(
                    store.refund_of(row),
                    int(row["tries"]),
                    bool(row["maybe_sent"]),
                    authorization.id if authorization else None,
                    authorization.processor_reference if authorization else None,
                )
            )
        # Committed before any call leaves: if we crash or time out, the next claimer looks it up first.
        await store.mark_maybe_sent(conn, [w.id for w in work if not w.was_maybe_sent])
        return work

    async def run(self, w: RefundWork) -> dict[str, Any]:
        """Call the processor for the refund, or look it up (outside any transaction)."""
        return await self._run(w)

    def failed(self, w: RefundWork, error: str) -> dict[str, Any]:
        """Running it raised (a bug): retried later, its error kept visible."""
        return self._retry_later(w, error)

    async def write(self, conn: Conn, token: uuid.UUID, work: list[RefundWork], changes: list[dict[str, Any]]) -> None:
        """The outcomes, where the lease `token` still holds, with the money of those that succeeded."""
        now = datetime.now(UTC)
        for change in changes:
            change["updated"] = now
        written = await store.write_results(conn, token, changes)
        if len(written) < len(work):
            log.info("%d refund(s) changed hands meanwhile; their results were dropped", len(work) - len(written))
        done = {c["id"]: c for c in changes if c["id"] in written}
        finished = [rid for rid, c in done.items() if c["status"] != "pending"]
        rows = {r.id: r for r in await store.get_many(conn, finished)}
        await payables.record_refunds(
            conn, [rows[i] for i in finished if rows[i].status == RefundStatus.SUCCEEDED], tz=self._tz, now=now
        )
        await events.record(
            conn,
            [(rows[i].merchant_id, f"refund.{rows[i].status}", i, refund_object(rows[i])) for i in sorted(finished)],
        )
        await dead_letter_store.resolve(conn, "refund", finished)
        for w in work:
            if w.dead and w.id in written:
                change = done[w.id]
                history = [
                    {
                        "refund": w.id,
                        "payment": w.refund.payment_id,
                        "amount": w.refund.amount,
                        "calls": w.refund.calls + w.calls,
                        "maybe_sent": change["maybe_sent"],
                        "last_error": change["last_error"],
                    }
                ]
                await dead_letters.open_for(
                    conn,
                    DeadLetterKind.REFUND,
                    w.id,
                    "refund",
                    tries=w.tries,
                    last_error=change["last_error"],
                    history=history,
                    processor=w.refund.processor,
                )

    async def _run(self, w: RefundWork) -> dict[str, Any]:
        processor = self._processors.get(w.refund.processor)
        if not isinstance(processor, RefundingProcessor):
            return self._retry_later(w, f"no processor named {w.refund.processor!r} that can refund")
        janitor = self._retry.out_of_tries(w.tries)  # past its tries: only look up, until an operator retries
        # A registering processor (Stripe) names the authorization by its own id and finds a refund on it.
        registering = registers(processor)
        authorization = w.authorization_reference if registering else w.authorization_id
        if w.was_maybe_sent or janitor:
            if registers(processor):
                if authorization is None:
                    return self._retry_later(w, "no approved authorization to look the refund up on")
                result = await self._call(w, lambda: processor.lookup_operation_on(w.id, "refund", authorization))
            else:
                result = await self._call(w, lambda: processor.lookup_operation(w.id))
            if janitor or result.outcome is not Outcome.NOT_FOUND:
                return self._outcome(w, result)
            # No record: the earlier call never landed. Send again under the same id, so one still in
            # flight and this one count once.
        if authorization is None:
            return self._retry_later(w, "no approved authorization to refund")
        w.calls += 1
        return self._outcome(w, await self._call(w, lambda: processor.refund(w.id, authorization, w.refund.amount)))

    async def _call(self, w: RefundWork, call: Callable[[], Awaitable[ProcessorResult]]) -> ProcessorResult:
        """One call to the refund's processor, paced and noted for the breaker (services/pacing.py)."""
        return await self._calls.call(w.refund.processor, call)

    def _change(self, w: RefundWork, **fields: Any) -> dict[str, Any]:
        change: dict[str, Any] = {
            "id": w.id,
            "status": "pending",
            "failure_code": None,
            "failure_message": None,
            "processor_reference": None,
            "calls": w.calls,
            "maybe_sent": w.was_maybe_sent,  # a TRANSIENT call certainly did nothing
            "next_run_at": None,
            "last_error": None,
            "updated": None,
        }
        change.update(fields)
        return change

    def _outcome(self, w: RefundWork, result: ProcessorResult) -> dict[str, Any]:
        if result.outcome is Outcome.APPROVED:
            return self._change(w, status="succeeded", processor_reference=result.processor_reference, maybe_sent=True)
        if result.outcome is Outcome.DECLINED:
            return self._change(
                w,
                status="failed",
                failure_code=result.failure_code or "refund_declined",
                failure_message=result.message or "The processor declined the refund.",
                processor_reference=result.processor_reference,
                maybe_sent=True,
            )
        if result.outcome is Outcome.UNKNOWN:
            return self._retry_later(
                w,
                f"unknown outcome: {result.message or 'no answer'}",
                extra_delay=self._retry.lookup_delay_seconds,
                maybe_sent=True,  # the call may have been applied: look it up next time
            )
        if result.outcome is Outcome.NOT_FOUND:
            return self._retry_later(w, "the processor has no record of the refund yet")
        return self._retry_later(w, f"{result.outcome.value} failure: {result.message or 'processor unavailable'}")

    def _retry_later(
        self, w: RefundWork, error: str, *, extra_delay: float = 0.0, maybe_sent: bool | None = None
    ) -> dict[str, Any]:
        sent = w.was_maybe_sent if maybe_sent is None else maybe_sent
        then = self._retry.after_failure(w.tries, now=datetime.now(UTC), extra_delay=extra_delay)
        if isinstance(then, DeadLetter):
            # Out of tries: an operator decides (dead letter). Meanwhile a call sent earlier may still land,
            # so it keeps being looked up, slowly; nothing is re-sent on its own.
            w.dead = True
            return self._change(w, next_run_at=then.look_again_at, last_error=error, maybe_sent=sent)
        return self._change(w, next_run_at=then.when, last_error=error, maybe_sent=sent)
