"""A manual check of Tender's Stripe code against Stripe's real TEST mode (not run by the test suite).

    STRIPE_API_KEY=sk_test_... .venv/bin/python scripts/stripe_live_check.py

Runs the real flows through Tender's own processor classes (processors/stripe.py, processors/stripe_checkout.py),
without a database: a card payment captured at once, one authorized then captured, a partial refund, a cancel,
and a Checkout Session (created, found again by client_reference_id as Tender does after a lost answer, and
expired). Without STRIPE_API_KEY it says so and exits 0; a live key (sk_live_...) is refused: this moves money.
Exit 1 when a step does not answer what Tender expects. STRIPE_API_BASE overrides the API address.

Stripe refuses raw card numbers on accounts without "raw card data" access, even in test mode: if the first
step says so, enable it in the test-mode dashboard (or use an account that has it) and run again.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from datetime import UTC, datetime, timedelta

from tender.domain.outcomes import Outcome, ProcessorResult
from tender.processors.base import AuthorizeRequest, CardData
from tender.processors.stripe import StripeProcessor
from tender.processors.stripe_checkout import SessionRequest, StripeCheckout, StripeCheckoutUnavailable

CARD = CardData(
    number="4242424242424242", exp_month=12, exp_year=datetime.now(UTC).year + 3, cvc="123", holder_name="Tender Check"
)


class Check:
    def __init__(self) -> None:
        self.failed = 0

    def expect(self, step: str, result: ProcessorResult, *outcomes: Outcome) -> ProcessorResult:
        ok = result.outcome in outcomes
        self.failed += not ok
        detail = result.message or result.failure_code or ""
        print(f"{'ok  ' if ok else 'FAIL'} {step}: {result.outcome} {result.processor_reference or ''} {detail}")
        return result

    def that(self, step: str, ok: bool, detail: str = "") -> None:
        self.failed += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {step} {detail}")


def _request(capture: bool, intent: str | None = None, reference: str | None = None) -> AuthorizeRequest:
    return AuthorizeRequest(
        reference=reference or "att_check_" + uuid.uuid4().hex[:12],
        payment_id="pay_check_" + uuid.uuid4().hex[:12],
        amount=2500,
        currency="USD",
        capture=capture,
        card=CARD,
        processor_reference=intent,
    )


async def _pay(check: Check, stripe: StripeProcessor, capture: bool) -> tuple[str, str] | None:
    """Register, then confirm, as the payment pump does; (attempt id, pi id) of an authorized payment."""
    request = _request(capture)
    registered = check.expect(f"register (capture={capture})", await stripe.register(request), Outcome.NOT_FOUND)
    intent = registered.processor_reference
    if intent is None:
        return None
    confirmed = _request(capture, intent, request.reference)
    result = check.expect(f"confirm {intent}", await stripe.authorize(confirmed), Outcome.APPROVED)
    check.that("captured at once" if capture else "authorized only", result.captured == capture)
    again = check.expect("look-up of the stored pi id", await stripe.lookup(intent), Outcome.APPROVED)
    check.that("look-up agrees", again.captured == capture)
    return request.reference, intent


async def _checkout(check: Check, checkout: StripeCheckout) -> None:
    now = datetime.now(UTC)
    reference = "cs_check_" + uuid.uuid4().hex[:12]
    session = await checkout.create(
        SessionRequest(
            reference=reference,
            amount=2500,
            currency="USD",
            name="Tender live check",
            success_url="https://example.com/thanks",
            cancel_url="https://example.com/cart",
            expires_at=now + timedelta(hours=1),
            created=now,
        )
    )
    check.that("checkout session created", session.status == "open" and bool(session.url), str(session.url))
    found = await checkout.find(reference, now)
    check.that("found again by client_reference_id", found is not None and found.id == session.id)
    expired = await checkout.expire(session.id)
    check.that("checkout session expired", expired.status == "expired")


async def main() -> int:
    key = os.environ.get("STRIPE_API_KEY")
    if not key:
        print("STRIPE_API_KEY is not set: nothing checked. Set it to a test-mode secret key (sk_test_...) to run.")
        return 0
    if not key.startswith(("sk_test_", "rk_test_")):
        print("STRIPE_API_KEY is not a test-mode key: refused (this script moves money).", file=sys.stderr)
        return 2
    base = os.environ.get("STRIPE_API_BASE", "https://api.stripe.com")
    check = Check()
    stripe = StripeProcessor(key, api_base=base, timeout=30)
    checkout = StripeCheckout(key, api_base=base, timeout=30)
    try:
        await _pay(check, stripe, capture=True)
        manual = await _pay(check, stripe, capture=False)
        if manual is not None:
            attempt, intent = manual
            check.expect("capture", await stripe.capture(attempt + "-capture", intent), Outcome.APPROVED)
            refund = await stripe.refund("re_check_" + uuid.uuid4().hex[:12], intent, 1000)
            check.expect("partial refund of 1000", refund, Outcome.APPROVED, Outcome.UNKNOWN)
        to_cancel = await _pay(check, stripe, capture=False)
        if to_cancel is not None:
            attempt, intent = to_cancel
            check.expect("cancel", await stripe.cancel(attempt + "-cancel", intent), Outcome.APPROVED)
        try:
            await _checkout(check, checkout)
        except StripeCheckoutUnavailable as exc:
            check.that("checkout session", False, str(exc))
    finally:
        await stripe.aclose()
        await checkout.aclose()
    print("all checks passed" if not check.failed else f"{check.failed} check(s) failed")
    return 1 if check.failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
