"""Stripe's events (`POST /webhooks/stripe`): verified, stored, applied at most once and never backwards.

Verification is Stripe's own (`stripe.Webhook.construct_event`: the raw body, `Stripe-Signature`, a 300 s
tolerance) against TENDER_STRIPE_WEBHOOK_SECRET; nothing is stored before it passes. A verified event is stored
in `processor_events` under Stripe's event id (its primary key: a replay stores and applies nothing) and applied
in the same transaction, so an event is either stored and applied, or neither, and Stripe retries it.

What each event does:
- `payment_intent.*`: the PaymentIntent is mapped by the stripe processor's own mapping
  (`processors.stripe.result_from_payment_intent`, the one the pump's calls use) and applied to the attempt it
  belongs to (`metadata.tender_attempt`, else the attempt that recorded its `pi_...`) through
  `payment_transitions.apply_answer`, the one status-change path: a late or out-of-order event is `stale`.
- `charge.refunded`: refunds Tender made are booked by Tender's refund pump when its own call (or look-up)
  answers, never here, so the money moves once. Tender's are told apart by `metadata.tender_refund` when the
  charge lists its refunds, else by the amounts (Stripe's charge no longer embeds them by default). A refund
  beyond Tender's was made at Stripe (its dashboard): the ledger cannot book it safely from an event (which
  of the payment's payables, which balance, a refund Tender may be making meanwhile), so it is recorded,
  shown to the merchant as a `payment.refunded_at_processor` event, and an operator gets a dead letter.
- `charge.dispute.created`: recorded and shown to the merchant as `payment.dispute_created` (amount, reason).
- `checkout.session.*`: handed to the Stripe Checkout flow (`checkout_stripe.apply_event`, same transaction).
- Anything else, or an object Tender does not know: stored, answered 200 (Stripe retries anything else).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, timedelta, tzinfo
from typing import Any

import orjson
import stripe
from pydantic import BaseModel, ConfigDict, Field

from tender.domain.models import Attempt, DeadLetterKind, Payment
from tender.domain.money_models import RefundStatus
from tender.errors import InvalidJson, NotificationRejected, WebhookNotConfigured
from tender.processors.stripe import REFUND_METADATA, result_from_payment_intent
from tender.services import checkout_stripe, dead_letters, payment_transitions
from tender.services.validation import check_json, parse
from tender.store import attempts as attempt_store
from tender.store import events as event_store
from tender.store import payments as payment_store
from tender.store import processor_events
from tender.store import refunds as refund_store
from tender.store.db import Conn, Database

log = logging.getLogger(__name__)

PROCESSOR = "stripe"
TOLERANCE_SECONDS = 300  # Stripe's default: a captured request replayed later than this is refused
PAYMENT_INTENT_EVENTS = frozenset(
    {
        "payment_intent.succeeded",
        "payment_intent.payment_failed",
        "payment_intent.canceled",
        "payment_intent.requires_action",
        "payment_intent.amount_capturable_updated",
    }
)
CHECKOUT_EVENTS = frozenset(
    {
        "checkout.session.completed",
        "checkout.session.expired",
        "checkout.session.async_payment_succeeded",
        "checkout.session.async_payment_failed",
    }
)


class _Data(BaseModel):
    model_config = ConfigDict(extra="ignore")

    object: dict[str, Any]


class StripeEvent(BaseModel):
    """The part of Stripe's Event object Tender reads; the whole event is stored as it came."""

    model_config = ConfigDict(extra="ignore")

    id: str = Field(min_length=1, max_length=255)
    type: str = Field(min_length=1, max_length=255)
    data: _Data


async def receive(
    db: Database,
    secret: str | None,
    headers: Mapping[str, str],
    body: bytes,
    *,
    business_tz: tzinfo = UTC,
    action_lookup: timedelta,
) -> str:
    """Verify, store and apply one Stripe event; returns what happened (the outcome stored with it, or
    `duplicate` for a replay). Raises a 400 for anything not verified or not an event."""
    if not secret:
        raise WebhookNotConfigured("The Stripe webhook is not configured: TENDER_STRIPE_WEBHOOK_SECRET is not set.")
    event, payload = _verified(secret, headers.get("stripe-signature"), body)

    async with db.transaction() as conn:
        if not await processor_events.insert(conn, PROCESSOR, event.id, event.type, payload):
            return "duplicate"
        outcome = await _apply(conn, event, payload, business_tz, action_lookup)
        await processor_events.set_outcome(conn, PROCESSOR, event.id, outcome)
    log.info("stripe event %s (%s): %s", event.id, event.type, outcome)
    return outcome


def _verified(secret: str, signature: str | None, body: bytes) -> tuple[StripeEvent, dict[str, Any]]:
    """Stripe's own check of the signature and its age, then the event read strictly (orjson: no NaN, which
    jsonb could not hold) into what is stored and what is read. Never quotes the body: it is Stripe's, but
    a 400's message should carry nothing of what was sent."""
    try:
        stripe.Webhook.construct_event(body, signature, secret, tolerance=TOLERANCE_SECONDS)
    except stripe.SignatureVerificationError as exc:
        raise NotificationRejected(f"Stripe-Signature rejected: {_reason(exc)}", param="Stripe-Signature") from None
    except (ValueError, TypeError, AttributeError, RecursionError):
        # signed, but not UTF-8 JSON, or not an object, or a v2 "thin" event
        raise InvalidJson("body: not a Stripe event (JSON object)", param="body") from None
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InvalidJson("body: not a Stripe event (JSON object)", param="body") from None
    if not isinstance(payload, dict):
        raise InvalidJson("body: not a Stripe event (JSON object)", param="body")
    check_json(payload, "body")  # signed, yet PostgreSQL's jsonb cannot hold a NUL
    return parse(StripeEvent, payload, prefix="body"), payload


def _reason(exc: stripe.SignatureVerificationError) -> str:
    """Which check failed, in the SDK's words, without the header or the body it also carries."""
    message = str(exc.user_message or exc).split(". ")[0]
    return message.rstrip(".")[:200]


async def _apply(conn: Conn, event: StripeEvent, payload: dict[str, Any], tz: tzinfo, action_lookup: timedelta) -> str:
    obj = event.data.object
    if event.type in PAYMENT_INTENT_EVENTS:
        return await _payment_intent(conn, obj, tz, action_lookup)
    if event.type == "charge.refunded":
        return await _charge_refunded(conn, event.id, obj)
    if event.type == "charge.dispute.created":
        return await _dispute_created(conn, event.id, obj)
    if event.type in CHECKOUT_EVENTS:
        return await checkout_stripe.apply_event(conn, payload, tz=tz)
    return "ignored"  # a type Tender does not subscribe to: kept for audit


async def _attempt_for(conn: Conn, pi: Mapping[str, Any]) -> Attempt | None:
    """The Stripe authorize attempt a PaymentIntent belongs to: the one its metadata names, provided it is a
    Stripe attempt that recorded no other PaymentIntent; else the one that recorded this PaymentIntent's id."""
    pi_id = pi.get("id")
    metadata = pi.get("metadata")
    named = metadata.get("tender_attempt") if isinstance(metadata, dict) else None
    if isinstance(named, str):
        attempt = await attempt_store.find(conn, named)
        if (
            attempt is not None
            and attempt.processor == PROCESSOR
            and attempt.operation == "authorize"
            and attempt.processor_reference in (None, pi_id)
        ):
            return attempt
    if isinstance(pi_id, str):
        return await processor_events.find_attempt(conn, PROCESSOR, pi_id)
    return None


async def _payment_intent(conn: Conn, pi: dict[str, Any], tz: tzinfo, action_lookup: timedelta) -> str:
    attempt = await _attempt_for(conn, pi)
    if attempt is None:
        return "unknown_object"
    result = result_from_payment_intent(pi)
    return await payment_transitions.apply_answer(conn, attempt, result, tz=tz, action_lookup=action_lookup)


async def _payment_of(conn: Conn, pi_id: object) -> Payment | None:
    """The payment whose Stripe PaymentIntent this is, row-locked (its events are numbered under the lock)."""
    if not isinstance(pi_id, str):
        return None
    attempt = await processor_events.find_attempt(conn, PROCESSOR, pi_id)
    if attempt is None:
        return None
    return await payment_store.lock_payment(conn, attempt.payment_id)


def _amount(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


async def _charge_refunded(conn: Conn, event_id: str, charge: dict[str, Any]) -> str:
    payment = await _payment_of(conn, charge.get("payment_intent"))
    if payment is None:
        return "unknown_object"
    at_stripe = _amount(charge.get("amount_refunded"))
    # Tender's own refunds, answered or not: a pending one may already be done at Stripe, and its pump books it.
    by_tender = payment.amount_refunded + await refund_store.pending_amount(conn, payment.id)
    listed = _listed_refunds(charge)
    if listed is None:  # Stripe's charge no longer embeds its refunds (API 2022-11-15 on): by the amounts
        unbooked = at_stripe - by_tender
    else:  # each refund by its metadata: one of this payment's refunds that Tender has not given up on
        named = [n for _, n in listed if n is not None]
        ours = {
            r.id
            for r in await refund_store.get_many(conn, named)
            if r.payment_id == payment.id and r.status in (RefundStatus.PENDING, RefundStatus.SUCCEEDED)
        }
        unbooked = sum(amount for amount, n in listed if n not in ours)
    if unbooked <= 0:
        return "refund_by_tender"
    await event_store.record(
        conn,
        [
            (
                payment.merchant_id,
                "payment.refunded_at_processor",
                payment.id,
                {
                    "object": "processor_refund",
                    "payment": payment.id,
                    "processor": PROCESSOR,
                    "processor_reference": charge.get("id") if isinstance(charge.get("id"), str) else None,
                    "currency": payment.currency,
                    "amount_refunded_at_processor": at_stripe,
                    "amount_refunded_by_tender": by_tender,
                    "amount_not_booked": unbooked,
                },
            )
        ],
    )
    await dead_letters.open_for(
        conn,
        DeadLetterKind.PROCESSOR_EVENT,
        payment.id,
        "book_refund_made_at_processor",
        tries=1,
        last_error=(
            f"Stripe refunded {at_stripe} {payment.currency} of payment {payment.id}, Tender's refunds only "
            f"{by_tender}: {unbooked} was refunded outside Tender (Stripe event {event_id}) and is not in the "
            "ledger. Book it by hand; do not refund it again through Tender."
        ),
        history=[{"event": event_id, "amount_not_booked": unbooked}],
    )
    return "refund_not_by_tender"


def _listed_refunds(charge: Mapping[str, Any]) -> list[tuple[int, str | None]] | None:
    """The charge's refunds that hold money, as (amount, Tender's refund id from metadata), when the event
    carries the whole list (API versions before 2022-11-15, or expanded); None when it does not."""
    refunds = charge.get("refunds")
    if not isinstance(refunds, Mapping) or refunds.get("has_more") is not False:
        return None
    data = refunds.get("data")
    if not isinstance(data, list):
        return None
    found: list[tuple[int, str | None]] = []
    for refund in data:
        if not isinstance(refund, Mapping) or refund.get("status") in ("failed", "canceled"):
            continue
        metadata = refund.get("metadata")
        named = metadata.get(REFUND_METADATA) if isinstance(metadata, Mapping) else None
        found.append((_amount(refund.get("amount")), named if isinstance(named, str) else None))
    return found


async def _dispute_created(conn: Conn, event_id: str, dispute: dict[str, Any]) -> str:
    payment = await _payment_of(conn, dispute.get("payment_intent"))
    if payment is None:
        return "unknown_object"

    def text(key: str) -> str | None:
        value = dispute.get(key)
        return value[:255] if isinstance(value, str) else None

    await event_store.record(
        conn,
        [
            (
                payment.merchant_id,
                "payment.dispute_created",
                payment.id,
                {
                    "object": "dispute",
                    "id": text("id"),
                    "payment": payment.id,
                    "processor": PROCESSOR,
                    "amount": _amount(dispute.get("amount")),
                    "currency": (text("currency") or payment.currency).upper(),
                    "reason": text("reason"),
                    "status": text("status"),
                    "processor_event": event_id,
                },
            )
        ],
    )
    return "dispute_recorded"
