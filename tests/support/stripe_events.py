"""Stripe events for tests of `POST /webhooks/stripe`, signed with the `stripe` package's own helper
(`stripe.WebhookSignature.generate_signature_header`, "useful for signing payloads in unit tests").

The event and object shapes follow Stripe's API reference (Event, PaymentIntent, Charge, Dispute): localstripe
sends no charge.refunded or charge.dispute.created events and has no disputes, so these are built here, with
the fields Stripe documents, and only the ones Tender reads besides `id`, `object` and `type`.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson
import stripe

SECRET = "whsec_test_" + uuid.uuid4().hex  # the TENDER_STRIPE_WEBHOOK_SECRET of these tests


def stripe_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


def event(type_: str, obj: dict[str, Any], *, event_id: str | None = None) -> dict[str, Any]:
    """An Event (snapshot payload) as Stripe POSTs it."""
    return {
        "id": event_id or stripe_id("evt"),
        "object": "event",
        "api_version": "2024-06-20",
        "created": int(time.time()),
        "data": {"object": obj},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": type_,
    }


def signed(body: bytes, *, secret: str = SECRET, timestamp: int | None = None) -> dict[str, str]:
    """The headers Stripe sends with `body`: its Stripe-Signature computed by the stripe package."""
    header = stripe.WebhookSignature.generate_signature_header(body.decode(), secret, timestamp)
    return {"Stripe-Signature": header, "Content-Type": "application/json"}


async def post_event(api: Any, evt: dict[str, Any], **sign: Any) -> Any:
    body = orjson.dumps(evt)
    return await api.post("/webhooks/stripe", content=body, headers=signed(body, **sign))


def payment_intent(
    status: str,
    *,
    pi_id: str | None = None,
    attempt: str | None = None,
    amount: int = 2500,
    currency: str = "brl",
    capture_method: str = "automatic",
    decline_code: str | None = None,
) -> dict[str, Any]:
    """A PaymentIntent per Stripe's reference: `status` succeeded | requires_capture | requires_action |
    requires_payment_method (after a decline: `last_payment_error`) | canceled."""
    pi: dict[str, Any] = {
        "id": pi_id or stripe_id("pi"),
        "object": "payment_intent",
        "amount": amount,
        "amount_capturable": amount if status == "requires_capture" else 0,
        "amount_received": amount if status == "succeeded" else 0,
        "capture_method": capture_method,
        "confirmation_method": "automatic",
        "currency": currency,
        "status": status,
        "metadata": {"tender_attempt": attempt} if attempt else {},
        "payment_method": stripe_id("pm"),
        "last_payment_error": None,
        "next_action": None,
        "cancellation_reason": None,
        "latest_charge": stripe_id("ch") if status in ("succeeded", "requires_capture") else None,
        "livemode": False,
    }
    if status == "requires_payment_method":
        pi["last_payment_error"] = {
            "type": "card_error",
            "code": "card_declined",
            "decline_code": decline_code or "generic_decline",
            "message": "Your card was declined.",
        }
    if status == "requires_action":
        pi["next_action"] = {
            "type": "redirect_to_url",
            "redirect_to_url": {"url": "https://hooks.stripe.com/3d_secure_2/x", "return_url": "https://shop/r"},
        }
    return pi


def stripe_refund(amount: int, *, tender_refund: str | None = None, status: str = "succeeded") -> dict[str, Any]:
    """A Refund per Stripe's reference; Tender's carry their id in `metadata[tender_refund]`."""
    metadata = {"tender_refund": tender_refund} if tender_refund else {}
    return {"id": stripe_id("re"), "object": "refund", "amount": amount, "status": status, "metadata": metadata}


def charge_refunded(
    pi_id: str,
    *,
    amount: int,
    amount_refunded: int,
    currency: str = "brl",
    refunds: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A Charge after a refund, per Stripe's reference. `refunds` (the charge's list of them) is included only
    when given: Stripe stopped embedding it by default in API version 2022-11-15."""
    listed = {"refunds": {"object": "list", "data": refunds, "has_more": False}} if refunds is not None else {}
    return {
        **listed,
        "id": stripe_id("ch"),
        "object": "charge",
        "amount": amount,
        "amount_captured": amount,
        "amount_refunded": amount_refunded,
        "captured": True,
        "currency": currency,
        "payment_intent": pi_id,
        "refunded": amount_refunded == amount,
        "status": "succeeded",
    }


def dispute(pi_id: str, *, amount: int, reason: str = "fraudulent", currency: str = "brl") -> dict[str, Any]:
    """A Dispute per Stripe's reference, as `charge.dispute.created` carries it."""
    return {
        "id": stripe_id("dp"),
        "object": "dispute",
        "amount": amount,
        "charge": stripe_id("ch"),
        "currency": currency,
        "payment_intent": pi_id,
        "reason": reason,
        "status": "needs_response",
        "is_charge_refundable": False,
        "livemode": False,
    }
