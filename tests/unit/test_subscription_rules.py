"""The subscription rules of domain/subscriptions.py: what is due next for every status and invoice state, the
dunning schedule, and what a payment's end makes of the invoice and subscription (every cell)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tender.domain.recurring import FinalFailure, InvoiceStatus, SubscriptionStatus
from tender.domain.subscriptions import PaymentEnd, Step, after_payment, attempt_due, next_step

S = SubscriptionStatus
I = InvoiceStatus  # noqa: E741
DUE = datetime(2026, 1, 31, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("status", "cancel", "invoice", "in_flight", "step"),
    [
        (S.CANCELED, False, None, False, Step.NONE),
        (S.UNPAID, False, I.UNCOLLECTIBLE, False, Step.NONE),
        (S.CANCELED, False, I.OPEN, True, Step.NONE),
        (S.TRIALING, False, None, False, Step.RENEW),
        (S.TRIALING, True, None, False, Step.CANCEL),
        (S.ACTIVE, False, I.PAID, False, Step.RENEW),
        (S.ACTIVE, True, I.PAID, False, Step.CANCEL),
        (S.ACTIVE, False, I.OPEN, True, Step.WAIT),
        (S.ACTIVE, True, I.OPEN, True, Step.WAIT),
        (S.PAST_DUE, False, I.OPEN, False, Step.RETRY),
        (S.PAST_DUE, True, I.OPEN, False, Step.RETRY),  # dunning first; the cancel waits for the period's end
        (S.PAST_DUE, False, I.OPEN, True, Step.WAIT),
        (S.ACTIVE, False, I.VOID, False, Step.RENEW),
    ],
)
def test_next_step(status: S, cancel: bool, invoice: I | None, in_flight: bool, step: Step) -> None:
    got = next_step(status, cancel_at_period_end=cancel, invoice_status=invoice, payment_in_flight=in_flight)
    assert got == step


def test_attempts_are_at_the_due_time_then_the_dunning_days_after_it() -> None:
    days = [1, 3, 5]
    assert [attempt_due(DUE, days, n) for n in range(1, 6)] == [
        DUE,
        DUE + timedelta(days=1),
        DUE + timedelta(days=3),
        DUE + timedelta(days=5),
        None,
    ]
    assert attempt_due(DUE, days, 0) is None
    assert attempt_due(DUE, [], 1) == DUE and attempt_due(DUE, [], 2) is None  # no retries: one attempt
    assert attempt_due(DUE, [2, 7], 3) == DUE + timedelta(days=7)  # per merchant


@pytest.mark.parametrize("before", [S.ACTIVE, S.PAST_DUE, S.TRIALING])
def test_a_paid_invoice_makes_the_subscription_active(before: S) -> None:
    end = after_payment(
        before, succeeded=True, due=DUE, attempt=2, dunning_days=[1, 3, 5], on_final_failure=FinalFailure.UNPAID
    )
    assert end == PaymentEnd(I.PAID, S.ACTIVE, None)


@pytest.mark.parametrize(("attempt", "retry_in_days"), [(1, 1), (2, 3), (3, 5)])
def test_a_failure_with_retries_left_is_past_due_until_the_next(attempt: int, retry_in_days: int) -> None:
    end = after_payment(
        S.ACTIVE, succeeded=False, due=DUE, attempt=attempt, dunning_days=[1, 3, 5],
        on_final_failure=FinalFailure.UNPAID,
    )  # fmt: skip
    assert end == PaymentEnd(I.OPEN, S.PAST_DUE, DUE + timedelta(days=retry_in_days))


@pytest.mark.parametrize(("final", "status"), [(FinalFailure.UNPAID, S.UNPAID), (FinalFailure.CANCEL, S.CANCELED)])
def test_the_last_failure_is_uncollectible_and_unpaid_or_canceled(final: FinalFailure, status: S) -> None:
    end = after_payment(S.PAST_DUE, succeeded=False, due=DUE, attempt=4, dunning_days=[1, 3, 5], on_final_failure=final)
    assert end == PaymentEnd(I.UNCOLLECTIBLE, status, None)


def test_a_subscription_canceled_meanwhile_stays_canceled() -> None:
    kw = {"due": DUE, "attempt": 1, "dunning_days": [1, 3, 5], "on_final_failure": FinalFailure.UNPAID}
    assert after_payment(S.CANCELED, succeeded=True, **kw) == PaymentEnd(I.PAID, S.CANCELED, None)  # type: ignore[arg-type]
    assert after_payment(S.CANCELED, succeeded=False, **kw) == PaymentEnd(I.VOID, S.CANCELED, None)  # type: ignore[arg-type]
