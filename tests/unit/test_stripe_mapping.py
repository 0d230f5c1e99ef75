"""Stripe's answers mapped to Tender's outcomes (processors/stripe.py): pure functions, no network."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import stripe

from tender.processors.base import AuthorizeRequest, CardData, Outcome
from tender.processors.stripe import (
    StripeProcessor,
    intent_params,
    result_from_error,
    result_from_payment_intent,
    result_from_refund,
)


def _pi(status: str, **fields: Any) -> dict[str, Any]:
    return {"id": "pi_123", "object": "payment_intent", "amount": 2500, "status": status, **fields}


def test_succeeded_is_approved_and_captured_with_the_received_amount_and_funding() -> None:
    pm = {"id": "pm_1", "card": {"funding": "debit", "last4": "4242"}}
    result = result_from_payment_intent(_pi("succeeded", amount_received=2000, payment_method=pm))
    assert result.outcome is Outcome.APPROVED
    assert result.captured is True
    assert result.amount_captured == 2000
    assert result.processor_reference == "pi_123"
    assert result.funding == "debit"


def test_funding_falls_back_to_the_charge_and_ignores_unknown_values() -> None:
    charge = {"payment_method_details": {"card": {"funding": "prepaid"}}, "amount_captured": 2500}
    assert result_from_payment_intent(_pi("succeeded", latest_charge=charge)).funding == "prepaid"
    assert result_from_payment_intent(_pi("succeeded", latest_charge=charge)).amount_captured == 2500
    assert result_from_payment_intent(_pi("succeeded", payment_method="pm_1")).funding is None
    unknown = {"card": {"funding": "unknown"}}
    assert result_from_payment_intent(_pi("succeeded", payment_method=unknown)).funding is None


def test_requires_capture_is_approved_not_captured() -> None:
    result = result_from_payment_intent(_pi("requires_capture", amount_received=0))
    assert result.outcome is Outcome.APPROVED
    assert result.captured is False
    assert result.amount_captured is None


def test_requires_action_carries_the_redirect_url() -> None:
    action = {
        "type": "redirect_to_url",
        "redirect_to_url": {"url": "https://hooks.stripe.com/3ds/x", "return_url": "x"},
    }
    result = result_from_payment_intent(_pi("requires_action", next_action=action))
    assert result.outcome is Outcome.ACTION_REQUIRED
    assert result.redirect_url == "https://hooks.stripe.com/3ds/x"


def test_requires_action_through_stripe_js_uses_its_page_and_an_empty_one_is_none() -> None:
    sdk = {
        "type": "use_stripe_sdk",
        "use_stripe_sdk": {"type": "three_d_secure_redirect", "stripe_js": "https://s/3ds"},
    }
    assert result_from_payment_intent(_pi("requires_action", next_action=sdk)).redirect_url == "https://s/3ds"
    empty = {"type": "use_stripe_sdk", "use_stripe_sdk": {"stripe_js": ""}}
    result = result_from_payment_intent(_pi("requires_action", next_action=empty))
    assert result.outcome is Outcome.ACTION_REQUIRED
    assert result.redirect_url is None


def test_a_decline_maps_code_decline_code_and_message() -> None:
    error = {
        "code": "card_declined",
        "decline_code": "insufficient_funds",
        "message": "Your card has insufficient funds.",
    }
    result = result_from_payment_intent(_pi("requires_payment_method", last_payment_error=error))
    assert result.outcome is Outcome.DECLINED
    assert (result.failure_code, result.decline_code) == ("card_declined", "insufficient_funds")
    assert result.message == "Your card has insufficient funds."
    assert result.processor_reference == "pi_123"


def test_registered_but_unconfirmed_is_not_found() -> None:
    # The register-then-execute design rests on this: a PaymentIntent never confirmed has charged nothing.
    assert result_from_payment_intent(_pi("requires_confirmation")).outcome is Outcome.NOT_FOUND
    assert result_from_payment_intent(_pi("requires_payment_method")).outcome is Outcome.NOT_FOUND


def test_canceled_is_declined_canceled_and_processing_is_unknown() -> None:
    canceled = result_from_payment_intent(_pi("canceled", cancellation_reason="abandoned"))
    assert (canceled.outcome, canceled.failure_code) == (Outcome.DECLINED, "canceled")
    assert result_from_payment_intent(_pi("processing")).outcome is Outcome.UNKNOWN
    assert result_from_payment_intent(_pi("something_new")).outcome is Outcome.UNKNOWN


def test_refunds() -> None:
    assert result_from_refund({"id": "re_1", "status": "succeeded"}).outcome is Outcome.APPROVED
    assert result_from_refund({"id": "re_1", "status": "failed"}).outcome is Outcome.DECLINED
    assert result_from_refund({"id": "re_1", "status": "pending"}).outcome is Outcome.UNKNOWN


def _connection_error(cause: Exception) -> stripe.APIConnectionError:
    try:
        try:
            raise cause
        except Exception as exc:
            raise stripe.APIConnectionError("Unexpected error communicating with Stripe.") from exc
    except stripe.APIConnectionError as error:
        return error


def test_refused_connection_is_not_processed_even_for_a_confirm() -> None:
    error = _connection_error(httpx.ConnectError("connection refused"))
    assert result_from_error(error, side_effect=True).outcome is Outcome.TRANSIENT


def test_a_timeout_after_sending_is_unknown_for_a_confirm_and_transient_for_a_look_up() -> None:
    error = _connection_error(httpx.ReadTimeout("timed out"))
    assert result_from_error(error, side_effect=True).outcome is Outcome.UNKNOWN
    assert result_from_error(error, side_effect=False).outcome is Outcome.TRANSIENT


@pytest.mark.parametrize(
    ("error", "side_effect", "outcome"),
    [
        (stripe.APIError("boom", http_status=500), True, Outcome.UNKNOWN),
        (stripe.APIError("boom", http_status=503), False, Outcome.TRANSIENT),
        (stripe.RateLimitError("slow down", http_status=429), True, Outcome.TRANSIENT),
        (stripe.AuthenticationError("bad key", http_status=401), True, Outcome.TRANSIENT),
        (stripe.PermissionError("no", http_status=403), True, Outcome.TRANSIENT),
        (stripe.InvalidRequestError("no such", None, http_status=404), False, Outcome.NOT_FOUND),
        (
            stripe.InvalidRequestError("bad", "amount", http_status=400, code="parameter_invalid"),
            True,
            Outcome.DECLINED,
        ),
    ],
)
def test_http_failures(error: Exception, side_effect: bool, outcome: Outcome) -> None:
    assert result_from_error(error, side_effect=side_effect).outcome is outcome


def test_an_authentication_error_tells_the_operator_what_to_fix() -> None:
    message = result_from_error(
        stripe.AuthenticationError("Invalid API Key", http_status=401), side_effect=True
    ).message
    assert message is not None and "TENDER_STRIPE_SECRET_KEY" in message


def test_a_card_error_is_declined_with_its_codes() -> None:
    body = {
        "error": {
            "type": "card_error",
            "code": "card_declined",
            "decline_code": "generic_decline",
            "message": "Declined.",
        }
    }
    error = stripe.CardError("Declined.", None, "card_declined", http_status=402, json_body=body)
    result = result_from_error(error, side_effect=True)
    assert (result.outcome, result.failure_code, result.decline_code) == (
        Outcome.DECLINED,
        "card_declined",
        "generic_decline",
    )


def _request(capture: bool) -> AuthorizeRequest:
    card = CardData("4242424242424242", 10, 2030, "123", None)
    return AuthorizeRequest(
        reference="att_1", payment_id="pay_1", amount=2500, currency="BRL", capture=capture, card=card
    )


def test_the_payment_intent_is_unconfirmed_keyed_by_the_attempt_and_captures_as_the_payment_asks() -> None:
    params = intent_params(_request(capture=True), "pm_1", cards_only=True)
    assert "confirm" not in params  # registered first; confirmed only once its id is on record
    assert params["metadata"] == {"tender_attempt": "att_1", "tender_payment": "pay_1"}
    assert (params["amount"], params["currency"], params["payment_method"]) == (2500, "brl", "pm_1")
    assert params["capture_method"] == "automatic"
    assert params["allowed_payment_method_types"] == ["card"]
    manual = intent_params(_request(capture=False), "pm_1", cards_only=False)
    assert manual["capture_method"] == "manual" and "allowed_payment_method_types" not in manual
    assert "4242424242424242" not in repr(params) and "4242424242424242" not in repr(_request(True))


def test_an_emulator_is_any_api_base_but_stripes_own_by_default() -> None:
    assert StripeProcessor("sk_test_x")._emulator is False
    assert StripeProcessor("sk_test_x", api_base="http://127.0.0.1:8420")._emulator is True
    assert StripeProcessor("sk_test_x", api_base="http://127.0.0.1:8420", emulator=False)._emulator is False
