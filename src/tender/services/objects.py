"""The JSON objects of API.md, built from records. Used for responses, stored idempotent replies and events."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from tender.domain.models import Merchant, Payment


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


_CARD_FIELDS = ("brand", "last4", "exp_month", "exp_year", "funding", "fingerprint")


def _payment_method(method: dict[str, Any]) -> dict[str, Any]:
    """Stored as jsonb (which sorts keys); shown in the order of API.md."""
    if method.get("type") == "card":
        card = method.get("card") or {}
        return {"type": "card", "card": {k: card.get(k) for k in _CARD_FIELDS}}
    return {"type": method.get("type"), **{k: v for k, v in method.items() if k != "type"}}


def payment_object(p: Payment) -> dict[str, Any]:
    return {
        "id": p.id,
        "object": "payment",
        "amount": p.amount,
        "currency": p.currency,
        "status": p.status,
        "capture": p.capture,
        "amount_captured": p.amount_captured,
        "amount_refunded": p.amount_refunded,
        "payment_method": _payment_method(p.payment_method),
        "reference": p.reference,
        "description": p.description,
        "metadata": p.metadata,
        "customer": p.customer,
        "return_url": p.return_url,
        "failure_code": p.failure_code,
        "decline_code": p.decline_code,
        "failure_message": p.failure_message,
        "next_action": p.next_action,
        "processor": p.processor,
        "checkout_session": p.checkout_session_id,
        "created": iso(p.created),
        "updated": iso(p.updated),
    }


def merchant_object(m: Merchant) -> dict[str, Any]:
    return {"id": m.id, "object": "merchant", "name": m.name, "created": iso(m.created)}


def list_object(data: list[dict[str, Any]], *, has_more: bool, url: str) -> dict[str, Any]:
    return {"object": "list", "data": data, "has_more": has_more, "url": url}


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)
