"""The journal entries of domain/ledger.py: balanced, signed as documented, refusing what cannot balance."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tender.domain.ledger import (
    Entry,
    Line,
    UnbalancedEntry,
    account_kind,
    capture_entry,
    fees_account,
    merchant_account,
    receivable_account,
    refund_entry,
    settlement_entry,
)

DAY = date(2026, 11, 23)


def by_account(entry: Entry) -> dict[str, int]:
    return {line.account: line.amount for line in entry.lines}


def test_a_capture_debits_the_receivable_and_credits_the_merchant_and_the_fees() -> None:
    e = capture_entry(
        "txn_1", merchant_id="mer_1", payment_id="pay_1", processor="simulator", currency="BRL",
        amount=2500, fee=125, available=False, available_on=DAY,
    )  # fmt: skip
    assert by_account(e) == {
        "processor:simulator:receivable:BRL": 2500,
        "merchant:mer_1:pending:BRL": -2375,
        "platform:fees:BRL": -125,
    }
    assert (e.type, e.source_id, e.amount, e.fee, e.net, e.available_on) == ("payment", "pay_1", 2500, 125, 2375, DAY)


def test_a_capture_paid_at_once_credits_available_and_a_zero_fee_posts_no_fee_line() -> None:
    e = capture_entry(
        "txn_2", merchant_id="mer_1", payment_id="pay_2", processor="simulator", currency="JPY",
        amount=1000, fee=0, available=True, available_on=DAY,
    )  # fmt: skip
    assert by_account(e) == {"processor:simulator:receivable:JPY": 1000, "merchant:mer_1:available:JPY": -1000}


@pytest.mark.parametrize("from_available", [False, True])
def test_a_refund_debits_the_merchant_in_full(from_available: bool) -> None:
    e = refund_entry(
        "txn_3", merchant_id="mer_1", refund_id="re_1", processor="simulator", currency="USD",
        amount=700, from_available=from_available, available_on=DAY,
    )  # fmt: skip
    bucket = "available" if from_available else "pending"
    assert by_account(e) == {f"merchant:mer_1:{bucket}:USD": 700, "processor:simulator:receivable:USD": -700}
    assert (e.amount, e.fee, e.net) == (-700, 0, -700)


@pytest.mark.parametrize("net", [9_000, -125])
def test_a_settlement_moves_net_from_pending_to_available(net: int) -> None:
    e = settlement_entry("txn_4", merchant_id="mer_1", settlement_id="stl_1", currency="BRL", net=net, on=DAY)
    assert by_account(e) == {"merchant:mer_1:pending:BRL": net, "merchant:mer_1:available:BRL": -net}


def test_an_entry_that_does_not_balance_cannot_be_made() -> None:
    with pytest.raises(UnbalancedEntry):
        Entry("txn_5", "mer_1", "payment", "pay_1", "BRL", 100, 0, 100, DAY, (Line("a", 100), Line("b", -99)))
    with pytest.raises(UnbalancedEntry):
        Entry("txn_6", "mer_1", "payment", "pay_1", "BRL", 100, 10, 100, DAY, (Line("a", 1), Line("b", -1)))
    with pytest.raises(UnbalancedEntry):
        Entry("txn_7", "mer_1", "payment", "pay_1", "BRL", 0, 0, 0, DAY, (Line("a", 0),))


def test_account_ids_say_their_kind_owner_and_currency() -> None:
    assert account_kind(merchant_account("mer_1", "pending", "BRL")) == ("merchant_pending", "mer_1", "BRL")
    assert account_kind(merchant_account("mer_1", "available", "BHD")) == ("merchant_available", "mer_1", "BHD")
    assert account_kind(merchant_account("mer_1", "paid_out", "EUR")) == ("merchant_paid_out", "mer_1", "EUR")
    assert account_kind(fees_account("JPY")) == ("platform_fees", "platform", "JPY")
    assert account_kind(receivable_account("stripe", "USD")) == ("processor_receivable", "stripe", "USD")
    with pytest.raises(ValueError, match="not a ledger account"):
        account_kind("nonsense:BRL")
    with pytest.raises(ValueError, match="not a ledger account"):
        account_kind("merchant:mer_1:elsewhere:BRL")


@given(amount=st.integers(1, 99_999_999_999), fee_share=st.integers(0, 100), available=st.booleans())
def test_every_capture_entry_balances(amount: int, fee_share: int, available: bool) -> None:
    fee = amount * fee_share // 100
    e = capture_entry(
        "txn_h", merchant_id="m", payment_id="p", processor="simulator", currency="BRL",
        amount=amount, fee=fee, available=available, available_on=DAY,
    )  # fmt: skip
    assert sum(line.amount for line in e.lines) == 0
    assert -sum(line.amount for line in e.lines if line.account.startswith("merchant:")) == amount - fee
