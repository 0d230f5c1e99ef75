"""Webhook rules without I/O: event types, endpoint secrets, Standard Webhooks signatures. (Their retry schedule
is the one retry policy, domain/retry.py, with equal jitter: services/webhook_delivery.DeliveryPolicy.retry.)

Signatures follow the Standard Webhooks specification (standardwebhooks.com): the secret is
`whsec_<base64 key>`, the signed content is `<webhook-id>.<webhook-timestamp>.<raw body>`, and the
`webhook-signature` header lists `v1,<base64 HMAC-SHA256>` signatures separated by spaces, one per
secret in use (after a rotation the new and the old secret both sign until the old one expires).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Iterable, Sequence

SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)
_SECRET_BYTES = 24  # 192 bits; the spec asks for 24 to 64

# Every type Tender records. Payments: one event per status change (a new payment is the answer to the
# merchant's own request, so it has none). A payable's only change is to `paid`; a settlement is created,
# then updated if a late payable of its day joins it.
EVENT_TYPES = (
    "payment.processing",
    "payment.requires_action",
    "payment.requires_capture",
    "payment.succeeded",
    "payment.failed",
    "payment.canceled",
    # What the processor says happened to a payment outside Tender's own operations (Stripe's events).
    "payment.dispute_created",
    "payment.refunded_at_processor",
    "refund.succeeded",
    "refund.failed",
    "payable.paid",
    "settlement.created",
    "settlement.updated",
    "checkout.session.completed",
    "checkout.session.expired",
    "webhook_endpoint.disabled",
    # Recurring payments (issue 15).
    "customer.created",
    "payment_method.attached",
    "subscription.created",
    "subscription.updated",
    "subscription.past_due",
    "subscription.canceled",
    "invoice.created",
    "invoice.paid",
    "invoice.payment_failed",
    "invoice.uncollectible",
)
ALL_EVENTS = "*"


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(os.urandom(_SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key inside a `whsec_...` secret."""
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def signature(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def signature_header(keys: Iterable[bytes], message_id: str, timestamp: int, body: bytes) -> str:
    return " ".join(signature(key, message_id, timestamp, body) for key in keys)


def subscribes(filters: Sequence[str], event_type: str) -> bool:
    return ALL_EVENTS in filters or event_type in filters
