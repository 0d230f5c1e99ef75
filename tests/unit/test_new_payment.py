"""services/payments.validate_new: the checks that need no database, shared by the batched and one-by-one paths."""

from __future__ import annotations

import pytest

from tender.domain.errors import DomainError
from tender.errors import TenderError
from tender.services.payment_requests import PaymentCreate
from tender.services.payments import needs_no_lookup, validate_new

CARD = {"number": "4242 4242 4242 4242", "exp_month": 12, "exp_year": 2034, "cvc": "987"}


def request(**overrides: object) -> PaymentCreate:
    body: dict[str, object] = {"amount": 2500, "currency": "brl", "payment_method": {"type": "card", "card": CARD}}
    body.update(overrides)
    return PaymentCreate.model_validate(body)


def test_a_validated_payment_never_shows_its_card_number_or_cvc() -> None:
    new = validate_new("mer_1", request(), processor="simulator", available=["simulator"])
    assert (new.currency, new.amount, new.method_type, new.card_brand) == ("BRL", 2500, "card", "visa")
    for text in (repr(new), str(new)):
        assert "4242424242424242" not in text and "4242 4242" not in text and "987" not in text


@pytest.mark.parametrize(
    ("overrides", "param"),
    [
        ({"currency": "XYZ"}, "currency"),
        ({"amount": 0}, "amount"),
        ({"processor": "nowhere"}, "processor"),
        ({"off_session": True}, "off_session"),
        (
            {"payment_method": {"type": "card", "card": {**CARD, "number": "4242424242424241"}}},
            "payment_method.card.number",
        ),
        ({"payment_method": {"type": "bnpl"}}, "return_url"),
    ],
)
def test_each_mistake_is_named_as_one_by_one(overrides: dict[str, object], param: str) -> None:
    with pytest.raises((TenderError, DomainError)) as raised:
        validate_new("mer_1", request(**overrides), processor="simulator", available=["simulator"])
    assert raised.value.param == param


def test_only_requests_that_need_no_look_up_are_batched() -> None:
    assert needs_no_lookup(request())
    assert not needs_no_lookup(request(payment_method="pm_123", customer="cus_1"))
    assert not needs_no_lookup(request(setup_future_usage="off_session", customer="cus_1"))
