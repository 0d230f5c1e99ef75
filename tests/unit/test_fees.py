"""Fee plans (domain/fees.py): half-up rounding to the minor unit, fixed fees, rule look-up, payable terms."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tender.domain.fees import DEFAULT_PLAN, FeePlan, FeeRule, funding_of, payable_terms
from tender.domain.money import MAX_AMOUNT, percent_of

DAY = date(2026, 2, 27)


def rule(percent: str, fixed: dict[str, int] | None = None, **kw: object) -> FeeRule:
    args: dict[str, object] = {"payment_method": "*", "funding": "*", "delay_days": 2, "starts": "waiting_funds"}
    args.update(kw)
    return FeeRule(percent=Decimal(percent), fixed=fixed or {}, **args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("amount", "currency", "fee"),
    [
        (1010, "BRL", 25),  # 25.25 -> 25
        (1030, "BRL", 26),  # 25.75 -> 26
        (1050, "BRL", 26),  # 26.25 -> 26
        (1020, "BRL", 26),  # 25.5: a tie rounds up, not to even (banker's rounding would give 26 too)
        (1060, "BRL", 27),  # 26.5: a tie rounds up (banker's rounding would give 26)
        (1020, "JPY", 26),  # 25.5 yen: no decimals, still half up
        (1060, "JPY", 27),
        (1010, "BHD", 25),  # 25.25 fils (3 decimals): rounded to the fils
        (1030, "BHD", 26),
        (1, "BRL", 0),  # 0.025 -> 0
        (20, "BRL", 1),  # 0.5 -> 1
    ],
)
def test_percent_fee_rounds_half_up_to_the_minor_unit(amount: int, currency: str, fee: int) -> None:
    assert rule("2.5").fee(amount, currency) == fee


def test_default_plan_matches_the_contract() -> None:
    credit = payable_terms(
        DEFAULT_PLAN, amount=2500, currency="BRL", payment_method="card", funding="credit", captured_on=DAY
    )
    assert (credit.fee, credit.net, credit.status, credit.payment_date) == (
        125,
        2375,
        "waiting_funds",
        date(2026, 3, 29),
    )
    debit = payable_terms(
        DEFAULT_PLAN, amount=2500, currency="BRL", payment_method="card", funding="debit", captured_on=DAY
    )
    assert (debit.fee, debit.net, debit.status, debit.payment_date) == (75, 2425, "paid", DAY)
    upi = payable_terms(
        DEFAULT_PLAN, amount=2500, currency="INR", payment_method="upi", funding="other", captured_on=DAY
    )
    assert (upi.fee, upi.net, upi.status, upi.payment_date) == (50, 2450, "waiting_funds", date(2026, 3, 1))
    # A prepaid card is neither credit nor debit: the catch-all rule.
    prepaid = payable_terms(
        DEFAULT_PLAN, amount=999, currency="USD", payment_method="card", funding="other", captured_on=DAY
    )
    assert (prepaid.fee, prepaid.status) == (20, "waiting_funds")  # 19.98 -> 20


def test_fixed_fee_is_per_currency_and_never_more_than_the_amount() -> None:
    r = rule("2.9", fixed={"BRL": 30})
    assert r.fee(1000, "BRL") == 29 + 30
    assert r.fee(1000, "USD") == 29  # no fixed fee listed for USD
    assert r.fee(10, "BRL") == 10  # 0.29 -> 0, + 30, capped at the amount: net is never negative
    assert r.fee(0, "BRL") == 0


def test_rule_lookup_prefers_exact_then_method_wildcard_then_catch_all() -> None:
    exact = rule("1", payment_method="card", funding="debit")
    method = rule("2", payment_method="card", funding="*")
    catch_all = rule("3")
    plan = FeePlan((catch_all, method, exact))  # order in the list does not matter, specificity does
    assert plan.rule_for("card", "debit") is exact
    assert plan.rule_for("card", "credit") is method
    assert plan.rule_for("upi", "other") is catch_all
    assert FeePlan((exact, method)).rule_for("card", "other") is method
    with pytest.raises(LookupError):
        FeePlan((exact, method)).rule_for("upi", "other")


def test_funding_of_a_payment_method() -> None:
    assert funding_of({"type": "card", "card": {"funding": "credit"}}) == "credit"
    assert funding_of({"type": "card", "card": {"funding": "debit"}}) == "debit"
    assert funding_of({"type": "card", "card": {"funding": "prepaid"}}) == "other"  # prepaid: the `other` rule
    assert funding_of({"type": "card", "card": {}}) == "credit"  # unknown funding is credit, as an unknown BIN
    assert funding_of({"type": "upi"}) == "other"


def test_a_plan_round_trips_through_its_stored_form() -> None:
    plan = FeePlan((rule("2.9", fixed={"BRL": 30}, payment_method="card", funding="credit"), rule("0.0125")))
    stored = plan.as_list()
    assert stored[0]["percent"] == "2.9"  # a string: stored exactly, never as a float
    assert FeePlan.from_list(stored) == plan


@given(
    amount=st.integers(min_value=0, max_value=MAX_AMOUNT),
    percent=st.decimals(min_value=0, max_value=100, places=4, allow_nan=False, allow_infinity=False),
)
def test_percent_fee_is_the_exact_half_up_product(amount: int, percent: Decimal) -> None:
    fee = rule(str(percent)).fee(amount, "BRL")
    assert 0 <= fee <= amount
    assert fee == percent_of(amount, percent / 100, "BRL")


@pytest.mark.parametrize(
    ("percent", "text"),
    [("10", "10"), ("1E+1", "10"), ("100", "100"), ("2.50", "2.5"), ("0.0125", "0.0125"), ("0", "0"), ("-0", "0"),
     ("0E-4", "0")],
)  # fmt: skip
def test_a_percent_is_shown_normalised(percent: str, text: str) -> None:
    assert rule(percent).as_dict()["percent"] == text
