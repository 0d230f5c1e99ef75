"""The typed records of money after capture (domain/money_models.py), the one pager's Page (store/db.py) and
the money presenters (services/objects.py): what each JSON object holds, in API.md's order."""

from __future__ import annotations

from dataclasses import FrozenInstanceError, replace
from datetime import UTC, date, datetime

import orjson
import pytest

from tender.domain.fees import DEFAULT_PLAN
from tender.domain.money_models import (
    Balance,
    BalanceLine,
    BalanceMismatch,
    BalanceTransaction,
    DriftedAccount,
    LedgerTotals,
    LedgerVerification,
    MerchantFeePlan,
    Payable,
    Refund,
    RefundStatus,
    Settlement,
    UnbalancedEntry,
)
from tender.services.objects import (
    balance_object,
    balance_transaction_object,
    dumps,
    fee_plan_object,
    ledger_verification_object,
    payable_object,
    refund_object,
    settlement_object,
)
from tender.store.db import Page

AT = datetime(2026, 3, 1, 12, 30, 45, 123456, tzinfo=UTC)


def test_a_page_unpacks_as_rows_and_has_more_and_maps_its_rows() -> None:
    page = Page([1, 2, 3], True)
    rows, has_more = page
    assert (rows, has_more) == ([1, 2, 3], True)
    assert page.map(str) == Page(["1", "2", "3"], True)
    assert Page[int]([], False).map(str).has_more is False


REFUND = Refund(
    id="re_1", merchant_id="mer_1", payment_id="pay_1", amount=500, currency="BRL", status=RefundStatus.PENDING,
    reason=None, metadata={"order": "7"}, failure_code=None, failure_message=None, processor="simulator",
    created=AT, updated=AT,
)  # fmt: skip


def refund(**kw: object) -> Refund:
    return replace(REFUND, **kw)


def test_a_refund_rows_text_status_becomes_the_enum_and_the_record_is_frozen() -> None:
    r = refund(status="succeeded")
    assert r.status is RefundStatus.SUCCEEDED
    with pytest.raises(ValueError, match="refunded"):
        refund(status="refunded")
    with pytest.raises(FrozenInstanceError):
        r.amount = 1  # type: ignore[misc]


def test_refund_object() -> None:
    body = refund_object(refund(status="failed", failure_code="refund_declined", failure_message="no"))
    assert list(body) == [
        "id", "object", "payment", "amount", "currency", "status", "reason", "metadata", "failure_code",
        "failure_message", "created", "updated",
    ]  # fmt: skip
    assert body["status"] == "failed" and body["payment"] == "pay_1" and body["created"] == "2026-03-01T12:30:45.123Z"
    assert b'"status":"failed"' in dumps(body)  # the enum is its text in JSON


PAYABLE = Payable(
    id="pyb_1", merchant_id="mer_1", type="payment", payment_id="pay_1", refund_id=None, status="waiting_funds",
    amount=1000, fee=50, net=950, currency="BRL", payment_method="card", funding="credit",
    payment_date=date(2026, 3, 31), settlement_id=None, created=AT, paid_at=None,
)  # fmt: skip


def payable(**kw: object) -> Payable:
    return replace(PAYABLE, **kw)


def test_payable_object() -> None:
    assert payable_object(payable()) == {
        "id": "pyb_1", "object": "payable", "type": "payment", "payment": "pay_1", "refund": None,
        "status": "waiting_funds", "amount": 1000, "fee": 50, "net": 950, "currency": "BRL",
        "payment_method": "card", "funding": "credit", "payment_date": "2026-03-31", "settlement": None,
        "created": "2026-03-01T12:30:45.123Z", "paid_at": None,
    }  # fmt: skip
    paid = payable_object(payable(status="paid", settlement_id="stl_1", paid_at=AT))
    assert (paid["settlement"], paid["paid_at"]) == ("stl_1", "2026-03-01T12:30:45.123Z")


def test_settlement_object_leaves_out_the_merchant_and_updated() -> None:
    s = Settlement("stl_1", "mer_1", "BRL", date(2026, 3, 31), 1900, 2, AT, AT)
    assert settlement_object(s) == {
        "id": "stl_1", "object": "settlement", "currency": "BRL", "date": "2026-03-31", "amount": 1900,
        "payables": 2, "created": "2026-03-01T12:30:45.123Z",
    }  # fmt: skip


def test_every_currency_of_a_balance_is_in_both_lists() -> None:
    b = Balance(waiting_funds={"USD": 10, "BRL": 950}, available={"EUR": -5, "BRL": 0})
    assert b.currencies == ["BRL", "EUR", "USD"]
    assert balance_object(b) == {
        "object": "balance",
        "waiting_funds": [{"currency": "BRL", "amount": 950}, {"currency": "EUR", "amount": 0},
                          {"currency": "USD", "amount": 10}],
        "available": [{"currency": "BRL", "amount": 0}, {"currency": "EUR", "amount": -5},
                      {"currency": "USD", "amount": 0}],
    }  # fmt: skip
    assert balance_object(Balance()) == {"object": "balance", "waiting_funds": [], "available": []}


def test_balance_transaction_object() -> None:
    t = BalanceTransaction("txn_1", "mer_1", "refund", "re_1", "BRL", -500, 0, -500, date(2026, 3, 2), AT, "pending")
    assert list(balance_transaction_object(t).items()) == [
        ("id", "txn_1"), ("object", "balance_transaction"), ("type", "refund"), ("amount", -500), ("fee", 0),
        ("net", -500), ("currency", "BRL"), ("available_on", "2026-03-02"), ("status", "pending"),
        ("source", "re_1"), ("created", "2026-03-01T12:30:45.123Z"),
    ]  # fmt: skip


def test_a_balance_line_matches_only_when_both_buckets_agree() -> None:
    line = BalanceLine("BRL", waiting_funds=950, available=10, payables_waiting_funds=950, payables_paid=10)
    assert line.matches
    assert not replace(line, available=11).matches
    assert not replace(line, payables_waiting_funds=949).matches
    assert BalanceLine("USD").matches  # nothing on either side


def test_fee_plan_object() -> None:
    body = fee_plan_object(MerchantFeePlan("mer_1", DEFAULT_PLAN, default=True))
    assert (body["object"], body["merchant"], body["default"]) == ("fee_plan", "mer_1", True)
    assert body["rules"] == DEFAULT_PLAN.as_list()


def test_the_ledger_is_balanced_only_when_no_check_finds_anything() -> None:
    clean = LedgerVerification(LedgerTotals(3, 9, 4, 2), [], [], [], [])
    assert clean.balanced
    assert orjson.loads(dumps(ledger_verification_object(clean))) == {
        "object": "ledger_verification", "balanced": True, "entries": 3, "lines": 9, "accounts": 4, "payables": 2,
        "unbalanced_entries": [], "entries_without_lines": [], "drifted_accounts": [], "balance_mismatches": [],
    }  # fmt: skip
    findings = [
        replace(clean, unbalanced_entries=[UnbalancedEntry("txn_1", "BRL", 1)]),
        replace(clean, entries_without_lines=["txn_2"]),
        replace(clean, drifted_accounts=[DriftedAccount("merchant:mer_1:pending:BRL", -949, -950)]),
        replace(clean, balance_mismatches=[BalanceMismatch("mer_1", "BRL", "paid", 10, 11)]),
    ]
    assert [v.balanced for v in findings] == [False] * 4
    body = ledger_verification_object(findings[3])
    assert body["balanced"] is False
    assert body["balance_mismatches"] == [
        {"merchant_id": "mer_1", "currency": "BRL", "status": "paid", "ledger": 10, "payables": 11}
    ]
    drifted = ledger_verification_object(findings[2])["drifted_accounts"]
    assert drifted == [{"id": "merchant:mer_1:pending:BRL", "stored": -949, "postings": -950}]
