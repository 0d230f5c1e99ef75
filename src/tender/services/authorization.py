"""Authorizing accepted payments through their processor: what the worker's payment pump runs.

One batch = three short transactions around the network calls:
1. claim due payments under a lease and write a `pending` attempt row for each one that has none;
2. call the processors concurrently, outside any transaction;
3. write every outcome back in one transaction, only where the lease is still ours.

An attempt is written before its call, so after a crash or a timeout we know a call may have reached
the processor: the open attempt is looked up by its id before anything else. If the processor has no
record of it, the call is sent again under the SAME attempt id (its idempotency key), never a new one:
the first call may still be in flight, and only the shared key makes the two count once. A new attempt
is made only after a definite "nothing was done" (a 503, a refused connection). A payment is never
authorized twice, whatever fails and whenever.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from tender.domain.ids import ATTEMPT, new_id
from tender.domain.models import Attempt, Payment, VaultCard
from tender.domain.payments import PaymentStatus, ensure_transition
from tender.processors.base import AuthorizeRequest, CardData, Outcome, Processor, ProcessorResult
from tender.store import payments as store
from tender.store.db import Database
from tender.store.payments import PAYMENT_COLUMNS
from tender.vault import Vault
from tender.worker.claim import backoff_seconds, claim_due

log = logging.getLogger(__name__)

AUTHORIZE = "authorize"
DECLINE_MESSAGES = {
    "generic_decline": "The card was declined.",
    "insufficient_funds": "The card has insufficient funds.",
    "lost_card": "The card was declined (reported lost).",
    "expired_card": "The card has expired.",
    "incorrect_cvc": "The card's security code is incorrect.",
}


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    base_seconds: float = 1.0
    cap_seconds: float = 300.0
    # After an unknown outcome, look the attempt up soon: the processor has usually settled by then.
    lookup_delay_seconds: float = 1.0


@dataclass(slots=True)
class _Work:
    payment: Payment
    tries: int
    attempt: Attempt
    is_lookup: bool  # the attempt predates this claim: ask the processor about it before re-sending it


class Authorizer:
    def __init__(
        self,
        db: Database,
        vault: Vault,
        processors: Mapping[str, Processor],
        *,
        lease_seconds: float = 60.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._db = db
        self._vault = vault
        self._processors = processors
        self._lease = lease_seconds
        self._retry = retry or RetryPolicy()

    async def run_batch(self, limit: int) -> int:
        """Claim and authorize up to `limit` due payments; returns how many were claimed."""
        async with self._db.transaction() as conn:
            claim = await claim_due(conn, "payments", columns=PAYMENT_COLUMNS, limit=limit, lease_seconds=self._lease)
            if not claim.rows:
                return 0
            payments = [(Payment(**{c: r[c] for c in PAYMENT_COLUMNS}), int(r["tries"])) for r in claim.rows]
            ids = [p.id for p, _ in payments]
            open_attempts = await store.open_attempts(conn, ids, AUTHORIZE)
            work: list[_Work] = []
            for payment, tries in payments:
                existing = open_attempts.get(payment.id)
                attempt = existing or Attempt(new_id(ATTEMPT), payment.id, AUTHORIZE, payment.processor)
                work.append(_Work(payment, tries, attempt, is_lookup=existing is not None))
            await store.insert_attempts(
                conn, [w.attempt for w in work if not w.is_lookup and w.payment.status == PaymentStatus.PROCESSING]
            )
            card_ids = [w.payment.card_id for w in work if w.payment.card_id]
            vault_cards = await store.get_cards(conn, card_ids) if card_ids else {}

        changes = await asyncio.gather(*(self._process_safely(w, vault_cards) for w in work))

        now = datetime.now(UTC)
        async with self._db.transaction() as conn:
            for change in changes:
                change["updated"] = now
            written = await store.update_after_processing(conn, claim.token, changes)
            lost = len(work) - len(written)
            if lost:
                log.warning("lease lost on %d payment(s); another worker has taken them over", lost)
            await store.finish_attempts(
                conn,
                [w.attempt for w in work if w.payment.id in written and w.payment.status == PaymentStatus.PROCESSING],
            )
            done_cards = [
                w.payment.card_id
                for w, change in zip(work, changes, strict=True)
                if w.payment.id in written and w.payment.card_id and change["status"] != PaymentStatus.PROCESSING
            ]
            await store.erase_cvcs(conn, done_cards)
        return len(work)

    async def _process_safely(self, w: _Work, vault_cards: Mapping[str, VaultCard]) -> dict[str, Any]:
        """One payment's bug must not sink its batch: it is retried later and its error kept visible."""
        try:
            return await self._process(w, vault_cards)
        except Exception as exc:
            log.exception("authorizing payment %s failed", w.payment.id)
            return self._retry_later(w, f"internal error: {type(exc).__name__}")

    async def _process(self, w: _Work, vault_cards: Mapping[str, VaultCard]) -> dict[str, Any]:
        payment = w.payment
        if payment.status != PaymentStatus.PROCESSING:
            # Nothing to authorize (e.g. a row scheduled by a later feature): just clear its schedule.
            return _change(payment, next_run_at=None)
        processor = self._processors.get(payment.processor)
        if processor is None:
            return self._retry_later(w, f"no processor named {payment.processor!r} is configured")
        if w.is_lookup:
            result = await processor.lookup(w.attempt.id)
            if result.outcome is not Outcome.NOT_FOUND:
                return self._apply(w, result)
            # No record (yet): send again under the same key, so a call still in flight counts once.
        request = self._authorize_request(payment, w.attempt, vault_cards)
        if request is None:
            return self._retry_later(w, "card data unavailable in the vault")
        return self._apply(w, await processor.authorize(request))

    def _authorize_request(
        self, payment: Payment, attempt: Attempt, vault_cards: Mapping[str, VaultCard]
    ) -> AuthorizeRequest | None:
        stored = vault_cards.get(payment.card_id or "")
        if stored is None:
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
        )

    def _apply(self, w: _Work, result: ProcessorResult) -> dict[str, Any]:
        payment, attempt = w.payment, w.attempt
        attempt.processor_reference = result.processor_reference
        attempt.failure_code, attempt.decline_code = result.failure_code, result.decline_code
        attempt.message = result.message
        match result.outcome:
            case Outcome.APPROVED:
                attempt.status = "approved"
                captured = result.captured or payment.capture
                status = PaymentStatus.SUCCEEDED if captured else PaymentStatus.REQUIRES_CAPTURE
                ensure_transition(PaymentStatus(payment.status), status)
                return _change(
                    payment,
                    status=status,
                    amount_captured=payment.amount if captured else 0,
                    processor_reference=result.processor_reference,
                )
            case Outcome.DECLINED:
                attempt.status = "declined"
                ensure_transition(PaymentStatus(payment.status), PaymentStatus.FAILED)
                failure_code = result.failure_code or "card_declined"
                return _change(
                    payment,
                    status=PaymentStatus.FAILED,
                    failure_code=failure_code,
                    decline_code=result.decline_code,
                    failure_message=result.message
                    or DECLINE_MESSAGES.get(result.decline_code or failure_code, "The card was declined."),
                    processor_reference=result.processor_reference,
                )
            case Outcome.ACTION_REQUIRED:
                attempt.status = "action_required"
                ensure_transition(PaymentStatus(payment.status), PaymentStatus.REQUIRES_ACTION)
                return _change(
                    payment,
                    status=PaymentStatus.REQUIRES_ACTION,
                    next_action={"type": "redirect_to_url", "url": result.redirect_url},
                    processor_reference=result.processor_reference,
                )
            case Outcome.UNKNOWN:
                # The call may have been applied: keep the attempt open and look it up next time.
                attempt.last_error = f"unknown outcome: {result.message or 'no answer'}"
                delay = self._retry.lookup_delay_seconds + backoff_seconds(
                    w.tries, base=self._retry.base_seconds, cap=self._retry.cap_seconds
                )
                return _change(
                    payment, next_run_at=datetime.now(UTC) + timedelta(seconds=delay), last_error=attempt.last_error
                )
            case Outcome.TRANSIENT | Outcome.NOT_FOUND:
                # Nothing was done by this call; an earlier call under the same key may still be in
                # flight, so the attempt stays open and is looked up first next time.
                return self._retry_later(w, f"transient failure: {result.message or 'processor unavailable'}")
        raise AssertionError(result.outcome)

    def _retry_later(self, w: _Work, error: str) -> dict[str, Any]:
        w.attempt.last_error = error
        delay = backoff_seconds(w.tries, base=self._retry.base_seconds, cap=self._retry.cap_seconds)
        return _change(w.payment, next_run_at=datetime.now(UTC) + timedelta(seconds=delay), last_error=error)


def _change(p: Payment, **fields: Any) -> dict[str, Any]:
    """The payment's row after processing: unchanged fields as they were, the schedule cleared by default."""
    change: dict[str, Any] = {
        "id": p.id,
        "status": p.status,
        "amount_captured": p.amount_captured,
        "failure_code": p.failure_code,
        "decline_code": p.decline_code,
        "failure_message": p.failure_message,
        "next_action": p.next_action,
        "processor_reference": None,
        "payment_method": p.payment_method,
        "next_run_at": None,
        "last_error": None,
    }
    change.update(fields)
    return change
