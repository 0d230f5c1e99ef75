"""domain/transitions.decide, cell by cell: every payment status x operation x outcome kind has an expectation.

The grids below are the rule, written out. Each cell is `<new status>/<attempt status>`:
- `same/<attempt>`: a change that keeps the status (a refused capture or cancel says why and looks again);
- `stale`: no change (the answer no longer applies: never move a status backwards);
- `error`: not a definitive outcome, which only the pump's retry logic handles (decide refuses it).
The test builds the full cross product from the enums, so a new status, operation or outcome without a
cell in every grid fails here first.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from tender.domain.models import Attempt, Payment
from tender.domain.outcomes import Outcome, ProcessorResult
from tender.domain.payments import PaymentStatus
from tender.domain.transitions import DECLINE_MESSAGES, DEFINITIVE, PaymentChange, change_of, decide

# Rows: the payment's status when the answer arrives. Columns: the answer's outcome.
GRIDS = {
    # An authorization of a payment captured at once (or an answer that says it was captured).
    ("authorize", True): """
                      approved            declined            action_required     transient   unknown     not_found
    processing        succeeded/approved  failed/declined     requires_action/action_required  error  error  error
    requires_action   succeeded/approved  failed/declined     stale               error       error       error
    requires_capture  succeeded/approved  canceled/pending    stale               error       error       error
    succeeded         stale               stale               stale               error       error       error
    failed            stale               stale               stale               error       error       error
    canceled          stale               stale               stale               error       error       error
    """,
    # An authorization for a later capture (`"capture": false`).
    ("authorize", False): """
                      approved                   declined          action_required   transient  unknown  not_found
    processing        requires_capture/approved  failed/declined   requires_action/action_required  error  error  error
    requires_action   requires_capture/approved  failed/declined   stale             error      error    error
    requires_capture  stale                      canceled/pending  stale             error      error    error
    succeeded         stale                      stale             stale             error      error    error
    failed            stale                      stale             stale             error      error    error
    canceled          stale                      stale             stale             error      error    error
    """,
    ("capture", False): """
                      approved            declined       action_required  transient  unknown  not_found
    processing        succeeded/approved  same/declined  stale            error      error    error
    requires_action   succeeded/approved  same/declined  stale            error      error    error
    requires_capture  succeeded/approved  same/declined  stale            error      error    error
    succeeded         stale               same/declined  stale            error      error    error
    failed            stale               same/declined  stale            error      error    error
    canceled          stale               same/declined  stale            error      error    error
    """,
    ("cancel", False): """
                      approved           declined       action_required  transient  unknown  not_found
    processing        stale              same/declined  stale            error      error    error
    requires_action   canceled/approved  same/declined  stale            error      error    error
    requires_capture  canceled/approved  same/declined  stale            error      error    error
    succeeded         stale              same/declined  stale            error      error    error
    failed            stale              same/declined  stale            error      error    error
    canceled          stale              same/declined  stale            error      error    error
    """,
}
OPERATIONS = ("authorize", "capture", "cancel")
NOW = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
LATER = NOW + timedelta(minutes=1)


def _cells() -> dict[tuple[str, bool, PaymentStatus, Outcome], str]:
    cells: dict[tuple[str, bool, PaymentStatus, Outcome], str] = {}
    for (operation, capture), grid in GRIDS.items():
        header, *rows = [line.split() for line in grid.strip().splitlines()]
        outcomes = [Outcome(name) for name in header]
        for status, *row in rows:
            assert len(row) == len(outcomes), f"{operation} grid, row {status}: one cell per outcome"
            for outcome, cell in zip(outcomes, row, strict=True):
                cells[operation, capture, PaymentStatus(status), outcome] = cell
    return cells


CELLS = _cells()


def payment(status: PaymentStatus, *, capture: bool = True, **fields: object) -> Payment:
    p = Payment(
        id="pay_1",
        merchant_id="mer_1",
        amount=1000,
        currency="BRL",
        status=status,
        capture=capture,
        amount_captured=0,
        amount_refunded=0,
        payment_method={"type": "card", "card": {"brand": "visa", "last4": "4242", "funding": "credit"}},
        card_id="card_1",
        reference=None,
        description=None,
        metadata={},
        customer=None,
        return_url=None,
        failure_code=None,
        decline_code=None,
        failure_message=None,
        next_action=None,
        processor="simulator",
        created=NOW,
        updated=NOW,
    )
    return replace(p, **fields) if fields else p


def test_every_cell_has_an_expectation() -> None:
    """The cross product of the enums, not the grids' own rows: a new status, operation or outcome fails here."""
    every = {
        (operation, capture, status, outcome)
        for operation in OPERATIONS
        for capture in ((True, False) if operation == "authorize" else (False,))
        for status, outcome in itertools.product(PaymentStatus, Outcome)
    }
    assert set(CELLS) == every


@pytest.mark.parametrize(
    ("operation", "capture", "status", "outcome"), sorted(CELLS), ids=lambda v: str(getattr(v, "value", v))
)
def test_cell(operation: str, capture: bool, status: PaymentStatus, outcome: Outcome) -> None:
    expected = CELLS[operation, capture, status, outcome]
    p = payment(status, capture=capture)
    attempt = Attempt("att_1", p.id, operation, p.processor, amount=None)
    result = ProcessorResult(outcome, processor_reference="psp_1", redirect_url="https://acs.example/1")
    if expected == "error":
        assert outcome not in DEFINITIVE
        with pytest.raises(ValueError, match="not a definitive outcome"):
            decide(p, attempt, result, next_run_at=LATER)
        return
    change = decide(p, attempt, result, next_run_at=LATER)
    if expected == "stale":
        assert change is None
        return
    new_status, attempt_status = expected.split("/")
    assert change is not None
    assert change.id == p.id and change.expected_status == status
    assert change.status == (status if new_status == "same" else PaymentStatus(new_status))
    assert change.moved is (new_status != "same")
    assert attempt.status == attempt_status
    assert attempt.processor_reference == "psp_1"
    assert change.reset_tries  # every answer that applies moves the work on: fresh tries, dead letters resolved
    # A final status has no next step; a waiting one has the caller's (or, authorized, the pump's capture window).
    if change.status in (PaymentStatus.REQUIRES_ACTION,) or new_status == "same":
        assert change.next_run_at == LATER
    else:
        assert change.next_run_at is None


def test_a_stale_answer_still_updates_nothing_but_the_attempts_record() -> None:
    p = payment(PaymentStatus.SUCCEEDED)
    attempt = Attempt("att_1", p.id, "authorize", p.processor)
    assert decide(p, attempt, ProcessorResult(Outcome.DECLINED, decline_code="insufficient_funds")) is None
    assert attempt.status == "pending"  # the attempt's outcome is not claimed for a payment that moved on


def test_an_answer_that_says_captured_captures_a_manual_payment() -> None:
    p = payment(PaymentStatus.PROCESSING, capture=False)
    change = decide(
        p, Attempt("att_1", p.id, "authorize", p.processor), ProcessorResult(Outcome.APPROVED, captured=True)
    )
    assert change is not None and change.status == PaymentStatus.SUCCEEDED and change.amount_captured == 1000


@pytest.mark.parametrize(("told", "booked"), [(None, 1000), (400, 400), (0, 1000), (1001, 1000)])
def test_a_capture_found_by_a_look_up_books_what_the_processor_captured(told: int | None, booked: int) -> None:
    p = payment(PaymentStatus.REQUIRES_CAPTURE, capture=False)
    result = ProcessorResult(Outcome.APPROVED, captured=True, amount_captured=told)
    change = decide(p, Attempt("att_1", p.id, "authorize", p.processor), result)
    assert change is not None and change.amount_captured == booked


def test_approval_clears_an_earlier_failure_and_carries_the_issuers_funding() -> None:
    p = payment(PaymentStatus.REQUIRES_CAPTURE, capture=False, failure_code="cancel_failed", failure_message="no")
    result = ProcessorResult(Outcome.APPROVED, captured=True, funding="debit")
    change = decide(p, Attempt("att_1", p.id, "authorize", p.processor), result)
    assert change is not None
    assert (change.failure_code, change.decline_code, change.failure_message) == (None, None, None)
    assert change.card_funding == "debit"


def test_a_capture_books_its_own_amount() -> None:
    p = payment(PaymentStatus.REQUIRES_CAPTURE, capture=False)
    change = decide(p, Attempt("att_1", p.id, "capture", p.processor, amount=250), ProcessorResult(Outcome.APPROVED))
    assert change is not None and change.amount_captured == 250


@pytest.mark.parametrize(
    ("decline_code", "failure_code", "message", "expected"),
    [
        ("insufficient_funds", None, None, DECLINE_MESSAGES["insufficient_funds"]),
        (None, "authentication_failed", None, DECLINE_MESSAGES["authentication_failed"]),
        ("do_not_honor", None, None, "The card was declined."),
        ("insufficient_funds", None, "Issuer says no.", "Issuer says no."),
    ],
)
def test_a_declined_authorization_says_why(
    decline_code: str | None, failure_code: str | None, message: str | None, expected: str
) -> None:
    p = payment(PaymentStatus.PROCESSING)
    result = ProcessorResult(Outcome.DECLINED, failure_code=failure_code, decline_code=decline_code, message=message)
    change = decide(p, Attempt("att_1", p.id, "authorize", p.processor), result)
    assert change is not None and change.status == PaymentStatus.FAILED
    assert change.failure_code == (failure_code or "card_declined")
    assert change.decline_code == decline_code and change.failure_message == expected


def test_an_authorization_the_processor_no_longer_holds_cancels_the_payment() -> None:
    p = payment(PaymentStatus.REQUIRES_CAPTURE, capture=False)
    change = decide(p, Attempt("att_1", p.id, "authorize", p.processor), ProcessorResult(Outcome.DECLINED))
    assert change is not None and change.status == PaymentStatus.CANCELED
    assert change.failure_code == "authorization_voided"


@pytest.mark.parametrize("operation", ["capture", "cancel"])
def test_a_refused_capture_or_cancel_keeps_the_status_and_says_why(operation: str) -> None:
    p = payment(PaymentStatus.REQUIRES_CAPTURE, capture=False)
    change = decide(p, Attempt("att_1", p.id, operation, p.processor), ProcessorResult(Outcome.DECLINED))
    assert change is not None and change.status == PaymentStatus.REQUIRES_CAPTURE
    assert change.failure_code == f"{operation}_failed"
    assert change.failure_message == f"The processor refused the {operation}."


def test_the_shoppers_action_is_where_the_processor_says() -> None:
    p = payment(PaymentStatus.PROCESSING)
    result = ProcessorResult(Outcome.ACTION_REQUIRED, redirect_url="https://acs.example/3ds")
    change = decide(p, Attempt("att_1", p.id, "authorize", p.processor), result, next_run_at=LATER)
    assert change is not None
    assert change.next_action == {"type": "redirect_to_url", "url": "https://acs.example/3ds"}


def test_change_of_keeps_the_payment_as_it_is() -> None:
    p = payment(PaymentStatus.REQUIRES_CAPTURE, capture=False, amount_captured=0, failure_code="capture_failed")
    change = change_of(p, next_run_at=LATER)
    assert change == PaymentChange(
        id=p.id,
        expected_status=p.status,
        status=p.status,
        amount_captured=0,
        failure_code="capture_failed",
        decline_code=None,
        failure_message=None,
        next_action=None,
        processor_reference=None,
        next_run_at=LATER,
        last_error=None,
        reset_tries=False,
        updated=None,
    )
    assert not change.moved
