"""domain/reconciliation.py: which statuses agree, what Tender's attempt says happened, the business day's bounds,
and what `reconcile` reports for pairs and lone records on either side."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from tender.domain.reconciliation import (
    ChargeStatus,
    FindingKind,
    LedgerRecord,
    RecordKind,
    RefundStatus,
    day_bounds,
    reconcile,
    statuses_agree,
    tender_charge_status,
    tender_refund_status,
)

C = ChargeStatus
DAY = date(2026, 3, 10)
WINDOW = day_bounds(DAY, UTC)
NOON = datetime(2026, 3, 10, 12, tzinfo=UTC)

# Charge statuses, Tender's (rows) against the processor's (columns): "=" agrees, "x" is a status mismatch.
# NOT_SENT is Tender's only; INCOMPLETE the processor's (a registration never confirmed).
_COLUMNS = [C.SUCCEEDED, C.AUTHORIZED, C.ACTION_REQUIRED, C.PENDING, C.DECLINED, C.CANCELED, C.INCOMPLETE]
CHARGE_GRID = {
    C.SUCCEEDED: "= x x x x x x",
    C.AUTHORIZED: "x = x x x x x",
    C.ACTION_REQUIRED: "x x = x x x x",
    C.PENDING: "x x x = x x x",
    C.NOT_SENT: "x x x x x x x",
    C.DECLINED: "x x x x = = =",
    C.CANCELED: "x x x x = = =",
}


@pytest.mark.parametrize(
    ("tender", "processor", "agree"),
    [
        (tender, processor, cell == "=")
        for tender, row in CHARGE_GRID.items()
        for processor, cell in zip(_COLUMNS, row.split(), strict=True)
    ],
)
def test_charge_statuses_agree_by_the_grid(tender: ChargeStatus, processor: ChargeStatus, agree: bool) -> None:
    assert statuses_agree(RecordKind.CHARGE, tender, processor) is agree


@pytest.mark.parametrize(
    ("tender", "processor", "agree"),
    [
        (RefundStatus.SUCCEEDED, RefundStatus.SUCCEEDED, True),
        (RefundStatus.FAILED, RefundStatus.FAILED, True),
        (RefundStatus.PENDING, RefundStatus.PENDING, True),
        (RefundStatus.SUCCEEDED, RefundStatus.FAILED, False),
        (RefundStatus.PENDING, RefundStatus.SUCCEEDED, False),
        (RefundStatus.NOT_SENT, RefundStatus.SUCCEEDED, False),
    ],
)
def test_refund_statuses_agree_only_when_equal(tender: RefundStatus, processor: RefundStatus, agree: bool) -> None:
    assert statuses_agree(RecordKind.REFUND, tender, processor) is agree


@pytest.mark.parametrize(
    ("attempt", "payment", "maybe_sent", "expected"),
    [
        ("not_processed", "succeeded", True, None),  # failed over: never on this processor's books
        ("pending", "processing", True, C.PENDING),
        ("pending", "processing", False, C.NOT_SENT),
        ("declined", "failed", True, C.DECLINED),
        ("approved", "succeeded", True, C.SUCCEEDED),
        ("approved", "requires_capture", True, C.AUTHORIZED),
        ("approved", "canceled", True, C.CANCELED),
        ("approved", "processing", True, C.PENDING),
        ("action_required", "requires_action", True, C.ACTION_REQUIRED),
        ("action_required", "canceled", True, C.CANCELED),
        ("action_required", "failed", True, C.CANCELED),
        ("action_required", "succeeded", True, C.SUCCEEDED),
    ],
)
def test_what_tenders_attempt_says(attempt: str, payment: str, maybe_sent: bool, expected: ChargeStatus | None) -> None:
    assert tender_charge_status(attempt, payment, maybe_sent=maybe_sent) == expected


def test_a_refund_pending_and_never_sent_is_not_sent() -> None:
    assert tender_refund_status("pending", maybe_sent=False) is RefundStatus.NOT_SENT
    assert tender_refund_status("pending", maybe_sent=True) is RefundStatus.PENDING
    assert tender_refund_status("succeeded", maybe_sent=False) is RefundStatus.SUCCEEDED


def test_a_business_day_is_its_time_zones_midnights() -> None:
    start, end = day_bounds(date(2026, 3, 10), ZoneInfo("America/Sao_Paulo"))
    assert (start, end) == (datetime(2026, 3, 10, 3, tzinfo=UTC), datetime(2026, 3, 11, 3, tzinfo=UTC))
    start, end = day_bounds(date(2026, 3, 29), ZoneInfo("Europe/Berlin"))  # summer time starts: 23 hours
    assert end - start == timedelta(hours=23)


def charge(
    ref: str | None,
    pid: str | None,
    *,
    amount: int = 1000,
    currency: str = "BRL",
    status: ChargeStatus = C.SUCCEEDED,
    captured: int | None = None,
    at: datetime = NOON,
) -> LedgerRecord:
    captured = amount if captured is None and status is C.SUCCEEDED else (captured or 0)
    return LedgerRecord(RecordKind.CHARGE, ref, pid, amount, currency, status, at, amount_captured=captured)


def refund(ref: str | None, pid: str | None, status: RefundStatus = RefundStatus.SUCCEEDED) -> LedgerRecord:
    return LedgerRecord(RecordKind.REFUND, ref, pid, 300, "BRL", status, NOON)


def test_pairs_match_by_reference_or_by_processor_id() -> None:
    ours = [charge("att_1", "sim_1"), charge("att_2", None), charge(None, "pi_3"), refund("re_1", None)]
    theirs = [charge("att_1", "sim_1"), charge("att_2", "sim_2"), charge("other", "pi_3"), refund("re_1", "op_1")]
    report = reconcile("p", DAY, WINDOW, ours, theirs)
    assert (report.matched, report.findings) == (4, ())
    assert report.clean


def test_a_declined_payment_declined_at_the_processor_is_matched() -> None:
    report = reconcile("p", DAY, WINDOW, [charge("att_1", "sim_1", status=C.DECLINED)], [
        charge("att_1", "sim_1", status=C.DECLINED)
    ])  # fmt: skip
    assert report.matched == 1 and report.clean


def test_lone_records_are_missing_on_the_other_side_only_if_they_moved_money() -> None:
    ours = [
        charge("att_1", "sim_1"),
        charge("att_2", None, status=C.DECLINED),  # refused before it got a record: nothing charged
        charge("att_3", None, status=C.NOT_SENT),  # never left Tender
        refund("re_1", None),
        refund("re_2", None, RefundStatus.FAILED),
    ]
    theirs = [
        charge("att_9", "sim_9", status=C.AUTHORIZED),
        charge("att_8", "pi_8", status=C.INCOMPLETE),  # a registration never confirmed
        refund("re_9", "op_9"),
    ]
    report = reconcile("p", DAY, WINDOW, ours, theirs)
    assert report.matched == 0
    assert [f["reference"] for f in report.of(FindingKind.MISSING_AT_PROCESSOR)] == ["att_1", "re_1"]
    assert [f["reference"] for f in report.of(FindingKind.MISSING_IN_TENDER)] == ["att_9", "re_9"]
    assert report.of(FindingKind.MISMATCHED) == []


def test_differences_name_each_field_with_both_values() -> None:
    ours = [
        charge("att_1", "sim_1", amount=1000),
        charge("att_2", "sim_2", currency="BRL"),
        charge("att_3", "sim_3", status=C.AUTHORIZED),
        charge("att_4", "sim_4", captured=1000),
        refund("re_1", "op_1"),
    ]
    theirs = [
        charge("att_1", "sim_1", amount=1200, captured=1000),
        charge("att_2", "sim_2", currency="usd"),
        charge("att_3", "sim_3", status=C.SUCCEEDED),
        charge("att_4", "sim_4", captured=600),
        refund("re_1", "op_1", RefundStatus.FAILED),
    ]
    report = reconcile("p", DAY, WINDOW, ours, theirs)
    found = {f["reference"]: f["differences"] for f in report.of(FindingKind.MISMATCHED)}
    assert found == {
        "att_1": [{"field": "amount", "tender": 1000, "processor": 1200}],
        "att_2": [{"field": "currency", "tender": "BRL", "processor": "USD"}],
        "att_3": [{"field": "status", "tender": "authorized", "processor": "succeeded"}],
        "att_4": [{"field": "amount_captured", "tender": 1000, "processor": 600}],
        "re_1": [{"field": "status", "tender": "succeeded", "processor": "failed"}],
    }
    assert report.matched == 0


def test_the_margin_pairs_across_midnight_and_lone_records_outside_the_day_belong_to_another() -> None:
    late = datetime(2026, 3, 10, 23, 59, 59, tzinfo=UTC)
    early_next = datetime(2026, 3, 11, 0, 0, 1, tzinfo=UTC)
    ours = [charge("att_1", "sim_1", at=late), charge("att_2", "sim_2", at=early_next)]
    theirs = [charge("att_1", "sim_1", at=early_next), charge("att_3", "sim_3", at=early_next)]
    report = reconcile("p", DAY, WINDOW, ours, theirs)
    assert report.matched == 1  # att_1: Tender's record is in the day
    assert report.clean  # att_2 and att_3 are the next day's to report


def test_an_orphan_registration_with_the_same_metadata_does_not_take_the_charges_place() -> None:
    """A Stripe registration whose answer was lost leaves a PaymentIntent never confirmed, carrying the same
    attempt id; Tender stored the other one's id. Whatever the order they are listed in, the charge pairs."""
    ours = [charge("att_1", "pi_real")]
    for theirs in (
        [charge("att_1", "pi_orphan", status=C.INCOMPLETE), charge("att_1", "pi_real")],
        [charge("att_1", "pi_real"), charge("att_1", "pi_orphan", status=C.INCOMPLETE)],
    ):
        report = reconcile("p", DAY, WINDOW, ours, theirs)
        assert (report.matched, report.clean) == (1, True)


@pytest.mark.parametrize(
    ("pi", "expected"),
    [
        ({"status": "succeeded"}, C.SUCCEEDED),
        ({"status": "requires_capture"}, C.AUTHORIZED),
        ({"status": "requires_action"}, C.ACTION_REQUIRED),
        ({"status": "processing"}, C.PENDING),
        ({"status": "canceled", "latest_charge": "ch_1"}, C.CANCELED),  # a voided authorization
        ({"status": "canceled", "latest_charge": None}, C.INCOMPLETE),  # registered, canceled, never charged
        ({"status": "requires_payment_method", "last_payment_error": {"code": "card_declined"}}, C.DECLINED),
        ({"status": "requires_payment_method"}, C.INCOMPLETE),
        ({"status": "requires_confirmation"}, C.INCOMPLETE),
    ],
)
def test_a_stripe_payment_intents_status(pi: dict[str, object], expected: ChargeStatus) -> None:
    from tender.processors.stripe import charge_status

    assert charge_status(pi) is expected


def test_a_stripe_payment_intent_as_a_record_takes_the_captured_amount_from_wherever_it_is() -> None:
    from tender.processors.stripe import record_of_payment_intent

    base = {"id": "pi_1", "amount": 2500, "currency": "brl", "created": 1_700_000_000, "status": "succeeded"}
    stripe = record_of_payment_intent({**base, "amount_received": 2000, "metadata": {"tender_attempt": "att_1"}})
    emulator = record_of_payment_intent({**base, "latest_charge": {"captured": True, "amount": 2500}})
    assert (stripe.reference, stripe.currency, stripe.amount_captured) == ("att_1", "BRL", 2000)
    assert (emulator.reference, emulator.amount_captured) == (None, 2500)
    assert emulator.created == datetime.fromtimestamp(1_700_000_000, UTC)
