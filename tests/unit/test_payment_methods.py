"""Alternative payment methods: the UPI address rule, and the fee rule an APM capture falls under."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from tender.domain import methods
from tender.domain.errors import ValidationFailed
from tender.domain.fees import ANY, DEFAULT_PLAN, FeePlan, FeeRule, funding_of, payable_terms


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("success@upi", "success@upi"),
        ("Shopper.Name-1_x@OkHdfcBank", "shopper.name-1_x@okhdfcbank"),
        (" 9876543210@ybl ", "9876543210@ybl"),
        ("a@ab", "a@ab"),
    ],
)
def test_valid_vpas_are_lower_cased(raw: str, clean: str) -> None:
    assert methods.validate_vpa(raw) == clean


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "shopper",
        "@upi",
        "shopper@",
        "a@b",
        "a@b@upi",
        "a b@upi",
        "a@1upi",
        ".a@upi",
        "a@up.i",
        "ä@upi",
        "a" * 250 + "@upi",
    ],
)
def test_invalid_vpas_name_the_param(raw: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        methods.validate_vpa(raw, param="payment_method.upi.vpa")
    assert caught.value.param == "payment_method.upi.vpa"
    assert "name@handle" in caught.value.message


def test_redirect_methods_are_the_apms_but_upi() -> None:
    assert set(methods.APM_TYPES) - {"upi"} == methods.REDIRECT_TYPES
    assert methods.is_apm({"type": "bnpl"}) and not methods.is_apm({"type": "card"})
    assert "paypal" in methods.WALLET_PROVIDERS and "HDFC" in methods.NETBANKING_BANKS


@pytest.mark.parametrize(
    "payment_method",
    [
        {"type": "upi", "upi": {"vpa": "success@upi"}},
        {"type": "wallet", "wallet": {"provider": "paypal"}},
        {"type": "netbanking", "netbanking": {"bank": None}},
        {"type": "bnpl", "bnpl": {"provider": "klarna"}},
    ],
)
def test_an_apm_capture_falls_under_other_methods(payment_method: dict[str, object]) -> None:
    """API.md: other methods 2 %, waiting_funds, payment_date = capture date + 2 days."""
    assert funding_of(payment_method) == "other"
    terms = payable_terms(
        DEFAULT_PLAN,
        amount=2500,
        currency="INR",
        payment_method=str(payment_method["type"]),
        funding=funding_of(payment_method),
        captured_on=date(2025, 3, 30),
    )
    assert (terms.fee, terms.net, terms.status, terms.payment_date) == (50, 2450, "waiting_funds", date(2025, 4, 1))


def test_a_method_rule_wins_over_the_catch_all() -> None:
    plan = FeePlan(
        (
            FeeRule("upi", ANY, Decimal("0.5"), 1, "paid"),
            FeeRule(ANY, ANY, Decimal("2"), 2, "waiting_funds"),
        )
    )
    upi = payable_terms(
        plan, amount=1001, currency="INR", payment_method="upi", funding="other", captured_on=date(2025, 1, 1)
    )
    assert (upi.fee, upi.status, upi.payment_date) == (5, "paid", date(2025, 1, 2))  # 5.005 rounds to 5
    wallet = payable_terms(
        plan, amount=1001, currency="INR", payment_method="wallet", funding="other", captured_on=date(2025, 1, 1)
    )
    assert (wallet.fee, wallet.status) == (20, "waiting_funds")  # 20.02
