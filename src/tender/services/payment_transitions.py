"""The one place where a payment's status changes, and everything that follows from it, in one transaction.

Every path that moves a payment comes here: the payment pump (an answer to its own call, a look-up, Tender
giving up waiting and voiding), an inbound processor notification, and any processor added later. What an
answer means is decided by `domain.transitions.decide`; this module writes it. It is the only caller of
the status-writing SQL (`store.payments.update_after_processing` under the pump's lease,
`store.payments.apply_change` for an answer that came without a claim), and after the row it writes, in
this order and in the caller's transaction:
1. the card's funding as the issuer reported it (before events and payables: the fee follows it);
2. the attempt's record: the outcome of the pump's call, or an answer that came without one;
3. Tender's own cancel, when the pump stops waiting (the shopper, the capture window);
4. the CVC, erased once authorization ends (PCI DSS 3.3.1: kept only until authorization);
5. the work's dead letters, resolved when it moved on; the authorization's attempt, closed on a cancel;
6. a `payment.<status>` event, and the checkout session the payment completes;
7. for a capture, the payable and its ledger entry (money moves with the status, never after it).

Making a payment due without changing its status (a merchant's capture or cancel request, an operator's
retry of a dead letter, housekeeping's rescue of a stranded row, the hosted page's look-up on return) is
only scheduling: the pump then runs it, and whatever status it reaches is written here.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from tender.domain.ids import ATTEMPT, new_id
from tender.domain.models import Attempt, Payment
from tender.domain.outcomes import ProcessorResult
from tender.domain.payments import FINAL_STATUSES, PaymentStatus
from tender.domain.transitions import DEFINITIVE, PaymentChange, decide
from tender.services import billing, events, payables
from tender.services.payments import save_cards_for_future_use
from tender.store import attempts as attempt_store
from tender.store import card_funding, dead_letters
from tender.store import payments as store
from tender.store.db import Conn

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Step:
    """One payment's change and how it came about."""

    payment: Payment  # as it was when the change was decided
    change: PaymentChange
    call: Attempt | None = None  # the attempt the pump called (or looked up) for it: its record is written
    answered: Attempt | None = None  # an attempt answered without a call of ours (a notification)
    void: bool = False  # Tender stops waiting: its own cancel is opened, due at once
    called: bool = True  # `call` was sent (or looked up); False: it never left (held, failed over before sending)
    marked: bool = False  # `call` was marked maybe_sent by the claim: its flag is now what the call showed


async def write_claimed(conn: Conn, token: Any, steps: Sequence[Step], *, tz: tzinfo, now: datetime) -> set[str]:
    """The pump's write-back: each change where the pump's lease (`token`) still holds and the status is still
    the one it claimed, and what follows; returns the ids written (the others changed hands or status)."""
    stamped = [replace(s, change=replace(s.change, updated=now)) for s in steps]
    # Pipeline mode: the statements below still run one after another, in this order, but those whose result
    # nobody reads are sent without waiting for the previous answer (a round trip each, before; issue 16).
    async with conn.pipeline():
        written = await store.update_after_processing(conn, token, [s.change for s in stamped])
        await _follow_up(conn, [s for s in stamped if s.change.id in written], tz=tz, now=now)
    return written


async def apply_answer(
    conn: Conn, attempt: Attempt, result: ProcessorResult, *, tz: tzinfo, action_lookup: timedelta
) -> str:
    """An answer about `attempt` that came without a call of ours (a notification): applied at most once and
    never backwards. Returns what happened: applied, stale (the payment moved on), ignored, unknown_reference."""
    if result.outcome not in DEFINITIVE:
        return "ignored"
    payment = await store.lock_payment(conn, attempt.payment_id)
    if payment is None:
        return "unknown_reference"
    now = datetime.now(UTC)
    change = decide(payment, attempt, result, next_run_at=now + action_lookup)
    if change is None:
        return "stale"
    change = replace(change, updated=now)
    if change.next_run_at is None and change.status not in FINAL_STATUSES:
        # Authorized for a later capture: the pump takes it from here at once (a capture or cancel the
        # merchant asked for meanwhile, then the capture window). No non-final status goes unscheduled.
        change = replace(change, next_run_at=now)
    if not await store.apply_change(conn, change):
        return "stale"
    await _follow_up(conn, [Step(payment, change, answered=attempt)], tz=tz, now=now)
    return "applied"


async def _follow_up(conn: Conn, steps: list[Step], *, tz: tzinfo, now: datetime) -> None:
    """What the written changes imply beyond the payment's row, in the same transaction (see the module)."""
    if not steps:
        return
    await card_funding.record(conn, {s.change.id: s.change.card_funding for s in steps if s.change.card_funding})
    await attempt_store.record_calls(
        conn,
        [s.call for s in steps if s.call is not None],
        uncounted={s.call.id for s in steps if s.call is not None and not s.called},
        marked={s.call.id for s in steps if s.call is not None and s.marked},
    )
    for s in steps:
        if s.answered is not None:
            await attempt_store.record_answer(conn, s.answered)
    voids = [Attempt(new_id(ATTEMPT), s.payment.id, "cancel", s.payment.processor) for s in steps if s.void]
    for payment_id in await attempt_store.open_voids(conn, voids):
        log.info("payment %s: waited long enough; Tender voids it", payment_id)
    # A one-off card's number is not needed once its payment is final: it leaves the vault with its CVC in one
    # UPDATE of its row (below, after saving cards for future use: a saved card keeps it). Any other card whose
    # authorization just ended loses its CVC now (PCI DSS 3.3.1).
    ending = {
        s.payment.card_id
        for s in steps
        if s.payment.card_id and s.payment.payment_method_id is None and s.change.status in FINAL_STATUSES
    }
    await store.erase_cvcs(
        conn,
        [
            s.payment.card_id
            for s in steps
            if s.payment.card_id
            and s.payment.card_id not in ending
            and s.change.expected_status == PaymentStatus.PROCESSING
            and s.change.status != PaymentStatus.PROCESSING
        ],
    )
    await dead_letters.resolve(conn, "payment", [s.change.id for s in steps if s.change.reset_tries])
    await attempt_store.close_authorizations(
        conn, [s.change.id for s in steps if s.change.status == PaymentStatus.CANCELED]
    )
    # setup_future_usage: an authorized card is saved to its customer and the payment names it (before events).
    await save_cards_for_future_use(conn, [(s.payment, s.change.status) for s in steps if s.change.moved])
    await store.erase_card_numbers(conn, sorted(ending))  # a card saved just above keeps its number (it has no CVC)
    await events.record_payment_changes(conn, [s.payment for s in steps if s.change.moved])
    # Recurring billing: an invoice follows its payment's end, and so does its subscription (before the
    # payables: a payment on a test clock gets its payable dated in the clock's time there).
    # (Only invoices' payments: `invoice_id` is set when a payment is made and never changes.)
    invoiced = [s.change.id for s in steps if s.change.moved and s.payment.invoice_id is not None]
    await billing.on_payment_changes(conn, invoiced, tz=tz, now=now)
    captured = [s.change.id for s in steps if s.change.moved and s.change.status == PaymentStatus.SUCCEEDED]
    await payables.record_captures(conn, captured, tz=tz, now=now)
