"""The JSON objects of API.md, built from records. Used for responses, stored idempotent replies and events."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import orjson

from tender.domain.models import (
    CheckoutSession,
    DeadLetter,
    DeliveryReport,
    DeliveryStatus,
    Event,
    Merchant,
    Payment,
    WebhookEndpoint,
)
from tender.domain.money_models import (
    Balance,
    BalanceTransaction,
    LedgerVerification,
    MerchantFeePlan,
    Payable,
    Refund,
    Settlement,
)
from tender.domain.recurring import Customer, SavedPaymentMethod, TestClock


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


_CARD_FIELDS = ("brand", "last4", "exp_month", "exp_year", "funding", "fingerprint")


def _payment_method(method: dict[str, Any], saved_id: str | None = None) -> dict[str, Any]:
    """Stored as jsonb (which sorts keys); shown in the order of API.md. A saved card (charged, or saved by
    setup_future_usage) shows its `pm_...` id first, as Stripe's payment_method does."""
    if method.get("type") == "card":
        card = method.get("card") or {}
        view = {"type": "card", "card": {k: card.get(k) for k in _CARD_FIELDS}}
        return {"id": saved_id, **view} if saved_id else view
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
        "payment_method": _payment_method(p.payment_method, p.payment_method_id),
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
        "processor_reference": p.processor_reference,  # the processor's own id (Stripe's pi_...); None: none
        "checkout_session": p.checkout_session_id,
        "off_session": p.off_session,  # merchant-initiated, with a saved method
        "setup_future_usage": p.setup_future_usage,
        "invoice": p.invoice_id,  # the subscription invoice it pays
        "created": iso(p.created),
        "updated": iso(p.updated),
    }


def merchant_object(m: Merchant) -> dict[str, Any]:
    return {"id": m.id, "object": "merchant", "name": m.name, "created": iso(m.created)}


# -- checkout, events, webhooks, dead letters ------------------------------------------------------------------


def session_object(s: CheckoutSession) -> dict[str, Any]:
    return {
        "id": s.id,
        "object": "checkout_session",
        "url": s.url or None,  # None while a processor's page is being registered
        "processor": s.processor,  # "stripe": hosted by Stripe Checkout; None: Tender's own page
        "status": s.status,
        "amount": s.amount,
        "currency": s.currency.strip(),
        "reference": s.reference,
        "description": s.description,
        "payment_method_types": list(s.payment_method_types),
        "success_url": s.success_url,
        "cancel_url": s.cancel_url,
        "payment": s.payment_id,
        "mode": s.mode,  # "payment" or "subscription"
        "customer": s.customer_id,
        "setup_future_usage": s.setup_future_usage,
        "subscription": s.subscription_id,  # the subscription the card entered started
        "expires_at": iso(s.expires_at),
        "created": iso(s.created),
        "updated": iso(s.updated),
    }


def event_object(e: Event) -> dict[str, Any]:
    return {
        "id": e.id,
        "object": "event",
        "type": e.type,
        "created": iso(e.created),
        "sequence": e.sequence,
        "data": e.data,
    }


def endpoint_object(e: WebhookEndpoint, *, secret: str | None = None) -> dict[str, Any]:
    """`secret` only where it is shown, once: on create and on rotation."""
    obj: dict[str, Any] = {
        "id": e.id,
        "object": "webhook_endpoint",
        "url": e.url,
        "description": e.description,
        "events": list(e.events),
        "enabled": e.enabled,
        "disabled_reason": e.disabled_reason,
        "created": iso(e.created),
        "updated": iso(e.updated),
    }
    if secret is not None:
        obj["secret"] = secret
    return obj


def delivery_object(report: DeliveryReport) -> dict[str, Any]:
    d = report.delivery
    return {
        "id": d.id,
        "object": "webhook_delivery",
        "endpoint": d.endpoint_id,
        "event": d.event_id,
        "event_type": d.event_type,
        "status": d.status,
        "attempts": [
            {
                "created": iso(a.attempted),
                "status_code": a.status_code,
                "latency_ms": a.latency_ms,
                "error": a.error,
            }
            for a in report.attempts
        ],
        "next_attempt": iso(d.next_run_at) if d.status is DeliveryStatus.PENDING and d.next_run_at else None,
        "created": iso(d.created),
        "updated": iso(d.updated),
    }


def dead_letter_object(d: DeadLetter) -> dict[str, Any]:
    return {
        "id": d.id,
        "object": "dead_letter",
        "kind": d.kind,
        "object_id": d.object_id,
        "operation": d.operation,
        "processor": d.processor,
        "status": d.status,
        "tries": d.tries,
        "last_error": d.last_error,
        "history": d.history,
        "created": iso(d.created),
        "updated": iso(d.updated),
    }


def list_object(data: list[dict[str, Any]], *, has_more: bool, url: str) -> dict[str, Any]:
    return {"object": "list", "data": data, "has_more": has_more, "url": url}


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)


# -- money after capture --------------------------------------------------------------------------------------


def refund_object(r: Refund) -> dict[str, Any]:
    return {
        "id": r.id,
        "object": "refund",
        "payment": r.payment_id,
        "amount": r.amount,
        "currency": r.currency,
        "status": r.status,
        "reason": r.reason,
        "metadata": r.metadata,
        "failure_code": r.failure_code,
        "failure_message": r.failure_message,
        "created": iso(r.created),
        "updated": iso(r.updated),
    }


def payable_object(p: Payable) -> dict[str, Any]:
    return {
        "id": p.id,
        "object": "payable",
        "type": p.type,
        "payment": p.payment_id,
        "refund": p.refund_id,
        "status": p.status,
        "amount": p.amount,
        "fee": p.fee,
        "net": p.net,
        "currency": p.currency,
        "payment_method": p.payment_method,
        "funding": p.funding,
        "payment_date": p.payment_date.isoformat(),
        "settlement": p.settlement_id,
        "created": iso(p.created),
        "paid_at": iso(p.paid_at) if p.paid_at else None,
    }


def settlement_object(s: Settlement) -> dict[str, Any]:
    return {
        "id": s.id,
        "object": "settlement",
        "currency": s.currency,
        "date": s.date.isoformat(),
        "amount": s.amount,
        "payables": s.payables,
        "created": iso(s.created),
    }


def balance_object(b: Balance) -> dict[str, Any]:
    """Every currency the merchant has money in appears in both lists."""
    currencies = b.currencies
    return {
        "object": "balance",
        "waiting_funds": [{"currency": c, "amount": b.waiting_funds.get(c, 0)} for c in currencies],
        "available": [{"currency": c, "amount": b.available.get(c, 0)} for c in currencies],
    }


def balance_transaction_object(t: BalanceTransaction) -> dict[str, Any]:
    """`status` is the ledger's (store/ledger.py `entry_statuses`), not `available_on` compared with today:
    money whose date has come stays pending until the settlement moves it, as the balance shows it."""
    return {
        "id": t.id,
        "object": "balance_transaction",
        "type": t.type,
        "amount": t.amount,
        "fee": t.fee,
        "net": t.net,
        "currency": t.currency,
        "available_on": t.available_on.isoformat(),
        "status": t.status,
        "source": t.source_id,
        "created": iso(t.created),
    }


def fee_plan_object(f: MerchantFeePlan) -> dict[str, Any]:
    return {"object": "fee_plan", "merchant": f.merchant_id, "default": f.default, "rules": f.plan.as_list()}


def ledger_verification_object(v: LedgerVerification) -> dict[str, Any]:
    return {
        "object": "ledger_verification",
        "balanced": v.balanced,
        **asdict(v.totals),
        "unbalanced_entries": [asdict(e) for e in v.unbalanced_entries],
        "entries_without_lines": list(v.entries_without_lines),
        "drifted_accounts": [asdict(a) for a in v.drifted_accounts],
        "balance_mismatches": [asdict(m) for m in v.balance_mismatches],
    }


# -- customers, saved payment methods, test clocks (issue 15) ------------------------------------------------


def customer_object(c: Customer) -> dict[str, Any]:
    return {
        "id": c.id,
        "object": "customer",
        "email": c.email,
        "name": c.name,
        "metadata": c.metadata,
        "default_payment_method": c.default_payment_method,
        "invoice_settings": {"default_payment_method": c.default_payment_method},  # where Stripe keeps it
        "test_clock": c.test_clock_id,
        "created": iso(c.created),
        "updated": iso(c.updated),
    }


def payment_method_object(m: SavedPaymentMethod) -> dict[str, Any]:
    return {
        "id": m.id,
        "object": "payment_method",
        "type": m.type,
        "card": {
            "brand": m.brand,
            "last4": m.last4,
            "exp_month": m.exp_month,
            "exp_year": m.exp_year,
            "funding": m.funding,
            "fingerprint": m.fingerprint,
        },
        "customer": m.customer_id,
        "created": iso(m.created),
        "updated": iso(m.updated),
    }


def clock_object(c: TestClock) -> dict[str, Any]:
    return {
        "id": c.id,
        "object": "test_clock",
        "name": c.name,
        "frozen_time": iso(c.frozen_time),
        "status": c.status,
        "created": iso(c.created),
        "updated": iso(c.updated),
    }
