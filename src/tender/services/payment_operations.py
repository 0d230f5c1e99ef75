"""Running payments' processor operations (authorize, capture, cancel, look-ups): what the worker's payment pump
(worker/pumps.py, on the generic batch pump of worker/pump.py) does with each payment it claims.

A payment is due when it has something to ask its processor: authorize it (`processing`), look up a
3-D Secure or APM approval result nobody told us about (`requires_action`), or capture or cancel it (an
open capture or cancel attempt). One batch = three short transactions around the network calls:
1. claim due payments under a lease and write a `pending` attempt for each operation about to be sent
   (`prepare`);
2. call the processors concurrently, outside any transaction (`run`);
3. write every outcome back in one transaction, only where the lease is still ours and the status is
   still the one we claimed (`write`, through services/payment_transitions.py: the one place a payment's
   status changes).

An attempt is written before its first call, so after a crash or a timeout we know a call may have
reached the processor: an attempt that existed before this claim is looked up by its id before anything
else. If the processor has no record of it, the call is sent again under the SAME attempt id (its
idempotency key), never a new one: the first call may still be in flight, and only the shared key makes
the two count once. A payment is never charged twice, whatever fails and whenever.

Failover (domain/failover.py decides, this module knows when it may ask): a payment's `route` lists the
processors it may run on, `processor` is the one in charge. Only an authorization that certainly charged nothing
moves on: never possibly sent (`maybe_sent` is marked in the claim's transaction before a call leaves, so a
worker dying mid-call leaves it set; a TRANSIENT answer, "certainly not done", leaves it as it was), or, at a
registering processor, never registered. Such an attempt moves to the next processor of the route that is on
and usable when its processor answers TRANSIENT, or before it is sent when the circuit breaker
(services/processor_health.py) says its processor is open or paused: the attempt is finished `not_processed`,
the payment's `processor` changes with the write, and the next claim opens a new attempt there. A decline, an
unknown outcome, a timeout and every look-up stay where they are: only that processor can say what it did.
When no processor of the route can take it, the payment is held (no try spent) until one may half-open; held
past `max_hold` after its creation, it fails `processor_unavailable` (nothing was charged). Every call's
outcome is reported to the breaker after the batch is written.

Retries back off exponentially with full jitter (domain/retry.py). After `max_tries` a dead letter is opened for an
operator, and the work is only looked up from then on, on a slow janitor schedule (a call sent earlier
may still land); it is never marked failed on a guess. An operator's retry gives it fresh tries. An
authorization is never sent without its CVC: once housekeeping has erased it (TENDER_CVC_RETENTION_HOURS),
a payment the processor has no record of fails `processor_unreachable` instead.

No non-final payment is left without a next step (`next_run_at`):
- processing: the authorization is sent, looked up, retried, or (dead letter) looked up by the janitor;
- requires_action: looked up until the shopper's result is known; after `action_expiry` Tender voids it;
- requires_capture: a capture or cancel in progress runs; otherwise the authorization is looked up at the end
  of `capture_window` and voided if still uncaptured (as Stripe does after 7 days);
- after a refused capture or cancel: the authorization is looked up at once, since the refusal may mean it
  is not what Tender thinks (captured after all, or voided), and what the processor says is applied.
Whatever a batch writes, `_scheduled` checks this rule last; housekeeping checks it in the database too.
How long Tender waits on the shopper and on the merchant is the `PaymentSchedule`.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from tender.domain import failover
from tender.domain.failover import Gate, Hold, Move
from tender.domain.ids import ATTEMPT, new_id
from tender.domain.methods import is_apm
from tender.domain.models import Attempt, DeadLetterKind, Payment, VaultCard
from tender.domain.payments import FINAL_STATUSES, PaymentStatus
from tender.domain.retry import DeadLetter, RetryPolicy
from tender.domain.transitions import DEFINITIVE, PaymentChange, change_of, decide
from tender.processors.base import (
    AuthorizeRequest,
    CardData,
    Outcome,
    Processor,
    ProcessorResult,
    SavedMethod,
    registers,
)
from tender.services import dead_letters, payment_transitions, payments
from tender.services.pacing import Pacing, ProcessorCalls
from tender.services.processor_health import ProcessorHealth
from tender.store import attempts as attempt_store
from tender.store import payments as store
from tender.store.db import Conn
from tender.store.payments import PAYMENT_COLUMNS
from tender.vault import Vault

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PaymentSchedule:
    """How long Tender waits on the shopper and on the merchant before it looks again, or gives up."""

    # A payment waiting for the shopper (3-D Secure, an APM approval) is looked up if no notification came by then.
    action_lookup_seconds: float = 60.0
    action_lookup_cap_seconds: float = 900.0
    # A payment held because no processor of its route can take it (circuits open, paused) waits at most this
    # long after its creation, then fails `processor_unavailable`. It looks again when a circuit may half-open,
    # and at least every `hold_poll_seconds` (a pause has no end time; a probe may close a circuit early).
    max_hold: timedelta = timedelta(seconds=600)
    hold_poll_seconds: float = 5.0
    # Waiting for the shopper this long, the payment is voided (canceled, failure_code `abandoned`).
    action_expiry: timedelta = timedelta(days=1)
    # Authorized and not captured this long, it is voided (canceled, `authorization_expired`): card networks
    # hold an authorization about a week, and Stripe cancels uncaptured payments after 7 days.
    capture_window: timedelta = timedelta(days=7)


@dataclass(slots=True)
class PaymentWork:
    """One claimed payment and the operation due for it."""

    payment: Payment
    tries: int
    attempt: Attempt | None  # the operation to run now; None: nothing to ask the processor
    is_new: bool  # made by this claim: send it; otherwise ask the processor about it first
    authorization_id: str | None = None  # capture/cancel: the authorize attempt they refer to
    authorization_reference: str | None = None  # ...and the processor's own id for it (a RegisteringProcessor's)
    dead: bool = False  # retries exhausted: open a dead letter
    # Only look the (finished) authorization up: its truth may differ from the payment's status. Its answer
    # changes the payment, never the attempt's own record.
    reconcile: bool = False
    void: bool = False  # Tender gives up waiting (shopper, capture): open a cancel in the write phase
    card: VaultCard | None = None  # a card payment still processing: its vault row (ciphertext)
    saved: SavedMethod | None = None  # a saved card (pm_...) on a registering processor: its refs there
    saved_refs: dict[str, Any] | None = None  # ...created there by this run: remembered with the write
    registered: bool = False  # registered at its processor by this run: to be executed at once
    marked: bool = False  # the authorization was marked maybe_sent by this claim (about to be sent)
    called: bool = True  # the operation's call was made; False: it never left (held, failed over before it)
    moved: bool = False  # failed over to another processor, due at once


def plan(
    payment: Payment, open_attempts: list[Attempt], authorization: Attempt | None = None
) -> tuple[Attempt | None, bool, bool]:
    """The operation due for a claimed payment: (attempt, is_new, reconcile). A cancel goes first.
    `authorization` is the payment's latest answered authorize attempt, for a look-up when nothing is open."""
    by_operation = {a.operation: a for a in open_attempts}
    if "cancel" in by_operation:
        return by_operation["cancel"], False, False
    match payment.status:
        case PaymentStatus.PROCESSING:
            if "authorize" in by_operation:
                return by_operation["authorize"], False, False
            return Attempt(new_id(ATTEMPT), payment.id, "authorize", payment.processor), True, False
        case PaymentStatus.REQUIRES_ACTION:
            if "authorize" in by_operation:
                return by_operation["authorize"], False, False
            return authorization, False, authorization is not None
        case PaymentStatus.REQUIRES_CAPTURE:
            if "capture" in by_operation:
                return by_operation["capture"], False, False
            # Due with nothing in progress: after a refused capture or cancel, or at the capture window's end.
            return authorization, False, authorization is not None
    return None, False, False


class PaymentOperations:
    """What the payment pump does with the payments it claims: plan each one's processor operation (`prepare`),
    run it (`run`; `failed` when running it raised), and write the outcomes (`write`)."""

    def __init__(
        self,
        vault: Vault,
        processors: Mapping[str, Processor],
        *,
        retry: RetryPolicy | None = None,
        schedule: PaymentSchedule | None = None,
        business_tz: tzinfo = UTC,
        health: ProcessorHealth | None = None,  # the circuit breaker; None: every processor that is on is usable
        pacing: Pacing | None = None,  # calls to one processor at a time, shared with the refund pump
    ) -> None:
        self._tz = business_tz
        self._health = health
        self._calls = ProcessorCalls(pacing, health)  # paced, and noted for the breaker
        self._vault = vault
        self._processors = processors
        self._retry = retry or RetryPolicy()
        self._schedule = schedule or PaymentSchedule()
        if self._retry.janitor_seconds is None:  # work that may have reached the processor is looked up until known
            raise ValueError("payments need a janitor schedule (janitor_seconds)")
        self._janitor = timedelta(seconds=self._retry.janitor_seconds)

    async def prepare(self, conn: Conn, rows: Sequence[Mapping[str, Any]]) -> list[PaymentWork]:
        """The claimed payments' work, in the claim's transaction: a new attempt is on record before its call."""
        card_ids = [r["card_id"] for r in rows if r["card_id"] and r["status"] == PaymentStatus.PROCESSING]
        waiting = [r["id"] for r in rows if r["status"] != PaymentStatus.PROCESSING]
        # One round trip for what the plans need (it was one statement each, and one more after the inserts).
        state = await store.claimed_state(conn, [r["id"] for r in rows], waiting, card_ids)
        work: list[PaymentWork] = []
        for row in rows:
            payment = Payment(**{c: row[c] for c in PAYMENT_COLUMNS})
            attempts, answered = state.open_attempts.get(payment.id, []), state.authorizations.get(payment.id)
            attempt, is_new, reconcile = plan(payment, attempts, answered)
            w = PaymentWork(payment, int(row["tries"]), attempt, is_new, reconcile=reconcile)
            w.card = state.cards.get(payment.card_id or "") if payment.status == PaymentStatus.PROCESSING else None
            work.append(w)
        # A capture or cancel names the authorization it refers to (read above for all but processing payments).
        read = set(waiting)
        unread = [
            w.payment.id for w in work if w.attempt and w.attempt.operation != "authorize" and w.payment.id not in read
        ]
        authorizations = state.authorizations
        if unread:
            authorizations = {**authorizations, **await attempt_store.latest_authorizations(conn, unread)}
        for w in work:
            if w.attempt and w.attempt.operation != "authorize" and (a := authorizations.get(w.payment.id)):
                w.authorization_id, w.authorization_reference = a.id, a.processor_reference
        # Before an authorization may leave: on record as maybe sent, so a worker dying mid-call can never let
        # it fail over (the write puts back what the call showed). A new attempt is inserted marked.
        for w in work:
            w.marked = self._may_send(w)
        marked = {w.attempt.id for w in work if w.marked and w.attempt}
        new = [w.attempt for w in work if w.attempt and w.is_new]
        await attempt_store.insert(conn, new, marked=marked)
        await attempt_store.mark_maybe_sent(conn, sorted(marked - {a.id for a in new}))
        registering = [
            w.payment
            for w in work
            if w.payment.payment_method_id
            and w.payment.status == PaymentStatus.PROCESSING
            and registers(self._processors.get(w.payment.processor))
        ]
        if registering:  # what the processor made of a saved card before (created there once)
            saved = await payments.saved_methods_of(conn, registering)
            for w in work:
                w.saved = saved.get(w.payment.id)
        return work

    async def run(self, w: PaymentWork) -> PaymentChange:
        """Run the payment's operation against its processor (outside any transaction)."""
        return self._scheduled(w, await self._run(w))

    def failed(self, w: PaymentWork, error: str) -> PaymentChange:
        """Running it raised (a bug): retried later, its error kept visible."""
        return self._scheduled(w, self._retry_later(w, error))

    async def write(self, conn: Conn, token: uuid.UUID, work: list[PaymentWork], changes: list[PaymentChange]) -> None:
        """The outcomes, where the lease `token` still holds, in the caller's transaction."""
        steps = [
            payment_transitions.Step(
                w.payment, c, call=None if w.reconcile else w.attempt, void=w.void, called=w.called, marked=w.marked
            )
            for w, c in zip(work, changes, strict=True)
        ]
        written = await payment_transitions.write_claimed(conn, token, steps, tz=self._tz, now=datetime.now(UTC))
        if len(written) < len(work):
            log.info(
                "%d payment(s) changed hands or status meanwhile; their results were dropped", len(work) - len(written)
            )
        if any((w.registered or w.moved) and w.payment.id in written for w in work):
            await store.wake_workers(conn)  # due at once: an idle worker confirms it now, not at its next poll
        # The objects of a saved card created at the processor with this registration: remembered in the same
        # transaction as its id, before anything is charged (never created twice).
        await payments.remember_saved_refs(
            conn,
            [
                (w.saved.id, w.payment.processor, w.saved_refs)
                for w in work
                if w.saved and w.saved_refs and w.payment.id in written
            ],
        )
        for w in work:
            if w.dead and w.attempt is not None and w.payment.id in written:
                await dead_letters.open_for(
                    conn,
                    DeadLetterKind.PAYMENT,
                    w.payment.id,
                    w.attempt.operation,
                    processor=w.payment.processor,
                    tries=w.tries,
                    last_error=w.attempt.last_error,
                    history=await attempt_store.history(conn, w.payment.id),
                )

    async def report_calls(self) -> None:
        """Tell the circuit breaker how the calls made since the last report went (services/pacing.py)."""
        await self._calls.report()

    def _may_send(self, w: PaymentWork) -> bool:
        """An authorization this claim may send (or confirm) and that is not marked maybe_sent yet."""
        a = w.attempt
        if a is None or a.operation != "authorize" or w.reconcile or w.payment.status != PaymentStatus.PROCESSING:
            return False
        if a.maybe_sent or a.status != "pending":
            return False
        processor = self._processors.get(w.payment.processor)
        return not (registers(processor) and a.processor_reference is None)  # registers

    def _charged_nothing(self, w: PaymentWork, processor: Processor | None) -> bool:
        """The authorization certainly charged nothing so far: it may go to another processor. Never possibly
        sent (the claim's mark makes `maybe_sent` trustworthy), or never registered at a registering processor."""
        a = w.attempt
        if a is None or a.operation != "authorize" or w.reconcile or w.payment.status != PaymentStatus.PROCESSING:
            return False
        if a.status != "pending":
            return False
        unregistered = registers(processor) and a.processor_reference is None
        return unregistered or not a.maybe_sent

    async def _call(self, name: str, call: Callable[[], Awaitable[ProcessorResult]]) -> ProcessorResult:
        """One call to processor `name`, paced and noted for the breaker (services/pacing.py)."""
        return await self._calls.call(name, call)

    async def _gates(self, names: Sequence[str]) -> dict[str, Gate]:
        """The breaker's word on `names` that are on, asked one at a time in order until one is usable: asking
        may take a half-open processor's probe slot, which only the processor actually sent to should hold."""
        gates: dict[str, Gate] = {}
        for name in names:
            if name not in self._processors or name in gates:
                continue
            if self._health is None:
                gates[name] = failover.OPEN
            else:
                available = (await self._health.availability([name]))[name]
                gates[name] = Gate(available.usable, available.retry_at)
            if gates[name].usable:
                break
        return gates

    async def _failover_before_sending(self, w: PaymentWork) -> PaymentChange | None:
        """Before an authorization that charged nothing is sent: a change if it must go elsewhere or wait."""
        p = w.payment
        gates = await self._gates([p.processor, *failover.candidates(p.route, p.processor)])
        decision = failover.before_sending(p.route, p.processor, gates, on=self._processors.keys())
        if isinstance(decision, Move):
            gate = gates.get(p.processor)
            why = "not on" if gate is None else "its circuit is open or it is paused"
            return self._move(w, decision, f"not sent: processor {p.processor} {why}", sent=False)
        if isinstance(decision, Hold):
            return self._hold(w, decision)
        return None

    async def _failover_after_refusal(self, w: PaymentWork, result: ProcessorResult) -> PaymentChange | None:
        """After the processor certainly did not act on an authorization that charged nothing: the next one."""
        p = w.payment
        gates = await self._gates(failover.candidates(p.route, p.processor))
        move = failover.after_refusal(p.route, p.processor, gates, on=self._processors.keys())
        if move is None:
            return None
        when = datetime.now(UTC)
        if move.wrapped:  # the route was gone round: two processors refusing in turn must not spin
            then = self._retry.after_failure(w.tries, now=when)
            if isinstance(then, DeadLetter):
                return None  # its tries are spent: retried here, a dead letter for an operator
            when = then.when
        return self._move(w, move, f"not processed by {p.processor}: {result.message or 'processor unavailable'}", when)

    def _move(
        self, w: PaymentWork, move: Move, reason: str, when: datetime | None = None, *, sent: bool = True
    ) -> PaymentChange:
        """Fail over: the attempt is finished not_processed and the payment handed to `move.processor`, due
        `when` (default: at once); the next claim opens an attempt there."""
        assert w.attempt is not None
        when = when or datetime.now(UTC)
        w.attempt.status, w.attempt.last_error = "not_processed", reason
        w.called, w.moved = sent, True
        log.info("payment %s: failover %s -> %s (%s)", w.payment.id, w.payment.processor, move.processor, reason)
        return change_of(w.payment, processor=move.processor, next_run_at=when, last_error=reason)

    def _hold(self, w: PaymentWork, hold: Hold) -> PaymentChange:
        """No processor of the route can take it now: wait (no try spent) until one may half-open, or poll a
        pause; past the longest hold, nothing having been sent anywhere, it fails `processor_unavailable`."""
        assert w.attempt is not None
        now = datetime.now(UTC)
        deadline = w.payment.created + self._schedule.max_hold
        w.called = False
        if now >= deadline:
            return self._unavailable(w)
        # Never longer than a poll: the half-open time of a busy probe slot is when the slot frees, while the
        # probe's answer (closing the circuit) usually comes within a second.
        poll = now + timedelta(seconds=self._schedule.hold_poll_seconds)
        until = min(hold.until or poll, poll)
        until = min(max(until, now + timedelta(seconds=0.5)), deadline)
        error = "held: no processor of its route can take it now (circuit open or paused)"
        w.attempt.last_error = error
        return change_of(w.payment, next_run_at=until, last_error=error, held=True)

    def _unavailable(self, w: PaymentWork) -> PaymentChange:
        assert w.attempt is not None
        minutes = self._schedule.max_hold / timedelta(minutes=1)
        message = (
            f"No processor could take the payment within {minutes:g} minutes; nothing was charged."
            " Ask the shopper to pay again later."
        )
        a = w.attempt
        a.status, a.failure_code, a.message, a.last_error = "not_processed", "processor_unavailable", message, message
        log.warning("payment %s: no processor of its route could take it in time; failed", w.payment.id)
        return change_of(
            w.payment,
            status=PaymentStatus.FAILED,
            failure_code="processor_unavailable",
            failure_message=message,
            next_action=None,
            reset_tries=True,
        )

    def _scheduled(self, w: PaymentWork, change: PaymentChange) -> PaymentChange:
        """The house rule, checked on every write: a non-final status always has a next step. Each path
        above sets its own; this only catches a path that forgot (a bug), loudly, and looks again later."""
        if change.next_run_at is None and change.status not in FINAL_STATUSES:
            log.error("payment %s: %s without a next step; looking again later", w.payment.id, change.status)
            return replace(change, next_run_at=datetime.now(UTC) + self._janitor)
        return change

    async def _run(self, w: PaymentWork) -> PaymentChange:
        payment, attempt = w.payment, w.attempt
        if attempt is None:
            return self._waiting(w)  # nothing to ask the processor about: the status's own next step
        processor = self._processors.get(payment.processor)
        janitor = self._retry.out_of_tries(w.tries)  # past its tries: only look up, until an operator retries
        movable = not janitor and self._charged_nothing(w, processor)
        # (A card whose CVC is gone can go nowhere: it fails below, wherever it is.)
        sendable = movable and not _cvc_erased(payment, w.card)
        if sendable and (change := await self._failover_before_sending(w)) is not None:
            return change
        if processor is None:
            return self._retry_later(w, f"no processor named {payment.processor!r} is configured")
        registering = registers(processor)
        if w.reconcile:
            return self._outcome(
                w, await self._call(payment.processor, lambda: processor.lookup(_key(processor, attempt)))
            )
        if attempt.operation == "authorize":
            cvc_erased = payment.status == PaymentStatus.PROCESSING and _cvc_erased(payment, w.card)
            if registers(processor) and attempt.processor_reference is None:
                # Register, then execute: nothing is charged until the processor's id is on record.
                if cvc_erased:
                    return self._never_sent(w)
                if janitor and not w.is_new:  # an operator decides; an unconfirmed registration charges nothing
                    return self._retry_later(w, attempt.last_error or "not registered at the processor")
                request = self._authorize_request(payment, attempt, w.card, w.saved)
                if request is None:
                    return self._retry_later(w, "card data unavailable in the vault")
                registration = request  # (narrowed for the call below)
                result = await self._call(payment.processor, lambda: processor.register(registration))
                # A registration charges nothing, whatever happened to it: safe to go elsewhere.
                failed = result.outcome is not Outcome.DECLINED and not result.processor_reference
                if movable and failed and (change := await self._failover_after_refusal(w, result)) is not None:
                    return change
                return self._registered(w, result)
            if not w.is_new and not movable:  # may have reached the processor: ask it first
                result = await self._call(payment.processor, lambda: processor.lookup(_key(processor, attempt)))
                if payment.status == PaymentStatus.REQUIRES_ACTION or result.outcome is not Outcome.NOT_FOUND:
                    return self._outcome(w, result)
                if cvc_erased:  # the processor never saw it, and it can never be sent again
                    return self._never_sent(w)
                if janitor:
                    return self._outcome(w, result)
                # No record (yet): send again under the same key, so a call still in flight counts once.
            elif cvc_erased:
                return self._never_sent(w)
            request = self._authorize_request(payment, attempt, w.card, w.saved)
            if request is None:
                return self._retry_later(w, "card data unavailable in the vault")
            if registering:
                request = replace(request, processor_reference=attempt.processor_reference)
            result = await self._call(payment.processor, lambda: processor.authorize(request))
            # TRANSIENT: certainly not done there, so the next processor may take it.
            refused = movable and result.outcome is Outcome.TRANSIENT
            if refused and (change := await self._failover_after_refusal(w, result)) is not None:
                return change
            return self._outcome(w, result)
        authorization = w.authorization_reference if registering else w.authorization_id
        if authorization is None:
            return self._retry_later(w, f"no authorization to {attempt.operation}")
        if not w.is_new:
            if registers(processor):
                result = await self._call(
                    payment.processor,
                    lambda: processor.lookup_operation_on(attempt.id, attempt.operation, authorization),
                )
            else:
                result = await self._call(payment.processor, lambda: processor.lookup_operation(attempt.id))
            if janitor or result.outcome is not Outcome.NOT_FOUND:
                return self._outcome(w, result)
        if attempt.operation == "capture":
            result = await self._call(
                payment.processor, lambda: processor.capture(attempt.id, authorization, attempt.amount)
            )
        else:
            result = await self._call(payment.processor, lambda: processor.cancel(attempt.id, authorization))
        return self._outcome(w, result)

    def _registered(self, w: PaymentWork, result: ProcessorResult) -> PaymentChange:
        """A registration's answer: its id is written with the attempt (this batch's write, its own transaction)
        and the payment is due at once, to be executed (confirmed) under that id. Else retried, or declined."""
        assert w.attempt is not None
        if result.outcome is Outcome.NOT_FOUND and result.processor_reference:
            w.attempt.processor_reference = result.processor_reference
            w.attempt.last_error = None
            w.registered = True
            w.saved_refs = result.saved_refs
            return change_of(w.payment, processor_reference=result.processor_reference, next_run_at=datetime.now(UTC))
        if result.outcome is Outcome.DECLINED:
            return self._outcome(w, result)
        # Nothing was charged, whatever happened: registering again is safe (TRANSIENT, never a look-up).
        return self._retry_later(w, f"not registered: {result.message or 'processor unavailable'}")

    def _authorize_request(
        self, payment: Payment, attempt: Attempt, stored: VaultCard | None, saved: SavedMethod | None = None
    ) -> AuthorizeRequest | None:
        if is_apm(payment.payment_method):  # nothing in the vault: the public view is what the processor needs
            return AuthorizeRequest(
                reference=attempt.id,
                payment_id=payment.id,
                amount=payment.amount,
                currency=payment.currency,
                capture=payment.capture,
                method=dict(payment.payment_method),
                return_url=payment.return_url,
            )
        if stored is None or stored.number_ct is None:
            return None
        try:
            number = self._vault.decrypt(stored.number_ct, row_id=stored.id)
            cvc = self._vault.decrypt(stored.cvc_ct, row_id=stored.id + ":cvc") if stored.cvc_ct else None
        except Exception:  # wrong key or tampered row: never let the message carry card data
            log.error("cannot decrypt vault card %s for payment %s", stored.id, payment.id)
            return None
        return AuthorizeRequest(
            reference=attempt.id,
            payment_id=payment.id,
            amount=payment.amount,
            currency=payment.currency,
            capture=payment.capture,
            card=CardData(number, stored.exp_month, stored.exp_year, cvc, stored.holder_name),
            return_url=payment.return_url,
            off_session=payment.off_session,
            saved=saved,
        )

    def _outcome(self, w: PaymentWork, result: ProcessorResult) -> PaymentChange:
        assert w.attempt is not None
        payment, attempt = w.payment, w.attempt
        if payment.status == PaymentStatus.REQUIRES_ACTION and result.outcome is Outcome.ACTION_REQUIRED:
            return self._await_shopper(w)
        if result.outcome in DEFINITIVE:
            first_look = datetime.now(UTC) + timedelta(seconds=self._schedule.action_lookup_seconds)
            if attempt.operation != "authorize":  # a refused capture or cancel: learn why, at once
                first_look = datetime.now(UTC) + timedelta(seconds=self._retry.lookup_delay_seconds)
            change = decide(payment, attempt, result, next_run_at=first_look)
            if change is None:  # the answer changes nothing (it is what the payment shows, or the status moved on)
                if not w.reconcile:
                    log.info(
                        "payment %s: %s answer %s no longer applies to status %s",
                        payment.id,
                        attempt.operation,
                        result.outcome,
                        payment.status,
                    )
                return self._waiting(w)
            if change.status == PaymentStatus.REQUIRES_CAPTURE and change.next_run_at is None:
                # Just authorized: the merchant's move, until the capture window closes.
                return replace(change, next_run_at=datetime.now(UTC) + self._schedule.capture_window)
            return change
        if result.outcome is Outcome.UNKNOWN:
            attempt.maybe_sent = True  # the call may have been applied: look it up next time
            return self._retry_later(
                w, f"unknown outcome: {result.message or 'no answer'}", extra_delay=self._retry.lookup_delay_seconds
            )
        return self._retry_later(w, f"transient failure: {result.message or 'processor unavailable'}")

    def _waiting(self, w: PaymentWork) -> PaymentChange:
        """The processor's truth is what the payment shows: the next step of its status."""
        match w.payment.status:
            case PaymentStatus.REQUIRES_ACTION:
                return self._await_shopper(w)
            case PaymentStatus.REQUIRES_CAPTURE:
                return self._await_capture(w)
            case PaymentStatus.PROCESSING:
                return self._retry_later(w, "nothing to send")
        return change_of(w.payment)  # final: nothing more to do

    def _void(self, w: PaymentWork, code: str, message: str) -> PaymentChange:
        """Tender stops waiting: a cancel is opened with the write (unless one is already under way) and runs
        at once, like a merchant's; if the processor refuses it, the look-up that follows applies the truth."""
        w.void = True
        return change_of(
            w.payment, failure_code=code, failure_message=message, next_run_at=datetime.now(UTC), reset_tries=True
        )

    def _await_capture(self, w: PaymentWork) -> PaymentChange:
        """Authorized, nothing in progress: the merchant's move, until the capture window closes."""
        deadline = w.payment.updated + self._schedule.capture_window  # `updated`: when it became requires_capture
        if datetime.now(UTC) >= deadline:
            days = self._schedule.capture_window / timedelta(days=1)
            return self._void(
                w, "authorization_expired", f"Not captured within {days:g} days: the authorization was voided."
            )
        return change_of(w.payment, next_run_at=deadline, reset_tries=True)

    def _never_sent(self, w: PaymentWork) -> PaymentChange:
        """The CVC was erased (retention) and the processor has no record of the authorization: it can never be
        sent, and nothing was charged. Failed, with a code that says so, rather than processing for ever."""
        assert w.attempt is not None
        message = (
            "The processor could not be reached before the card's security code had to be erased;"
            " nothing was charged. Ask the shopper to pay again."
        )
        w.attempt.status, w.attempt.failure_code, w.attempt.message = "declined", "processor_unreachable", message
        log.warning("payment %s: CVC erased and never sent to the processor; failed", w.payment.id)
        return change_of(
            w.payment,
            status=PaymentStatus.FAILED,
            failure_code="processor_unreachable",
            failure_message=message,
            next_action=None,
            reset_tries=True,
        )

    def _await_shopper(self, w: PaymentWork) -> PaymentChange:
        """Still waiting for the shopper: look again later, less often the longer it waits; past `action_expiry`
        the payment is voided (a shopper who approves meanwhile makes the void fail, and the look-up wins)."""
        p = w.payment
        waited = datetime.now(UTC) - p.updated
        if waited > self._schedule.action_expiry:
            hours = self._schedule.action_expiry / timedelta(hours=1)
            return self._void(
                w, "abandoned", f"The shopper did not complete the required action within {hours:g} hours."
            )
        delay = min(
            self._schedule.action_lookup_cap_seconds,
            max(self._schedule.action_lookup_seconds, waited.total_seconds() / 2),
        )
        return change_of(p, next_run_at=datetime.now(UTC) + timedelta(seconds=delay), reset_tries=True)

    def _retry_later(self, w: PaymentWork, error: str, *, extra_delay: float = 0.0) -> PaymentChange:
        if w.attempt is not None:
            w.attempt.last_error = error
        then = self._retry.after_failure(w.tries, now=datetime.now(UTC), extra_delay=extra_delay)
        if isinstance(then, DeadLetter):
            # Out of tries: an operator decides (dead letter). Meanwhile a call sent earlier may still land
            # at the processor, so it keeps being looked up, slowly; nothing is re-sent on its own.
            w.dead = w.attempt is not None
            return change_of(w.payment, next_run_at=then.look_again_at, last_error=error)
        return change_of(w.payment, next_run_at=then.when, last_error=error)


def _key(processor: Processor, attempt: Attempt) -> str:
    """How the processor names an authorization: its own id for a RegisteringProcessor, else our attempt id."""
    if registers(processor) and attempt.processor_reference:
        return attempt.processor_reference
    return attempt.id


def _cvc_erased(payment: Payment, stored: VaultCard | None) -> bool:
    """A card payment still processing whose CVC is gone. Every card taken by the API or the hosted page comes
    with a CVC, and only housekeeping erases one before authorization ends (TENDER_CVC_RETENTION_HOURS). A saved
    card (payment_method_id: off-session or on-session) has none by design: never "erased"."""
    return (
        not is_apm(payment.payment_method)
        and payment.payment_method_id is None
        and stored is not None
        and stored.cvc_ct is None
    )
