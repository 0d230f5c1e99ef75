"""Accepting payments: synchronous checks, the card into the vault, the payment row due for the worker.

Nothing slow happens here: the worker's authorization pump does the processor call.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tender.domain import cards, money
from tender.domain.ids import ATTEMPT, PAYMENT, VAULT_CARD, new_id
from tender.domain.models import Attempt, Payment
from tender.domain.payments import PaymentStatus, validate_metadata, validate_reference
from tender.errors import DuplicateReference, InvalidRequest, NotFound
from tender.services.validation import parse
from tender.store import attempts as attempt_store
from tender.store import payments as store
from tender.store.db import Conn
from tender.vault import Vault

DEFAULT_PROCESSOR = "simulator"
APM_TYPES = ("upi", "wallet", "netbanking", "bnpl")


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class CardIn(_Strict):
    number: str = Field(description="The card number (PAN); only ever stored encrypted.")
    exp_month: int
    exp_year: int
    cvc: str = Field(description="3 digits, 4 for American Express; erased once authorization ends.")
    holder_name: str | None = None
    funding: Literal["credit", "debit", "prepaid"] | None = None


class CardMethodIn(_Strict):
    type: Literal["card"]
    card: CardIn


class PaymentCreate(_Strict):
    amount: int = Field(description="In the currency's minor unit (cents; 0 decimals for JPY, 3 for BHD).")
    currency: str = Field(description="ISO 4217 code, e.g. BRL.")
    payment_method: str | dict[str, Any] = Field(
        description='A saved method id ("pm_...") or {"type": "card", "card": {...}}.'
    )
    capture: bool = True
    reference: str | None = Field(default=None, description="Your order id; unique per merchant.")
    description: str | None = Field(default=None, max_length=1000)
    metadata: dict[str, Any] | None = None
    customer: str | None = None
    return_url: str | None = Field(default=None, max_length=2048)


def _check_return_url(url: str | None) -> str | None:
    if url is not None and not url.startswith(("https://", "http://")):
        raise InvalidRequest("return_url: must be an http(s) URL", param="return_url")
    return url


def _parse_card_method(raw: str | dict[str, Any]) -> CardMethodIn:
    if isinstance(raw, str):
        raise InvalidRequest(
            f"payment_method: no such saved payment method: {raw[:40]!r}",
            param="payment_method",
            code="resource_missing",
        )
    kind = raw.get("type")
    if kind in APM_TYPES:
        raise InvalidRequest(
            f"payment_method.type: {kind} payments are not enabled on this Tender yet",
            param="payment_method.type",
            code="payment_method_unavailable",
        )
    if kind != "card":
        raise InvalidRequest(
            "payment_method.type: must be one of card, " + ", ".join(APM_TYPES), param="payment_method.type"
        )
    return parse(CardMethodIn, raw, prefix="payment_method")


async def create_payment(
    conn: Conn,
    vault: Vault,
    merchant_id: str,
    request: PaymentCreate,
    *,
    now: datetime | None = None,
    checkout_session_id: str | None = None,
) -> Payment:
    """Validate, vault the card and insert the payment, due at once. Runs in the caller's transaction."""
    now = now or datetime.now(UTC)
    currency = money.normalize_currency(request.currency)
    amount = money.validate_amount(request.amount, currency)
    method = _parse_card_method(request.payment_method)
    card = cards.validate_card(
        number=method.card.number,
        exp_month=method.card.exp_month,
        exp_year=method.card.exp_year,
        cvc=method.card.cvc,
        holder_name=method.card.holder_name,
        funding=method.card.funding,
        today=now.date(),
    )
    reference = validate_reference(request.reference)
    metadata = validate_metadata(request.metadata) if request.metadata is not None else {}
    return_url = _check_return_url(request.return_url)

    card_id = new_id(VAULT_CARD)
    fingerprint = vault.fingerprint(card.number, merchant_id=merchant_id)
    await store.insert_card(
        conn,
        card_id=card_id,
        merchant_id=merchant_id,
        number_ct=vault.encrypt(card.number, row_id=card_id),
        cvc_ct=vault.encrypt(card.cvc, row_id=card_id + ":cvc"),
        fingerprint=fingerprint,
        brand=card.brand,
        last4=card.last4,
        exp_month=card.exp_month,
        exp_year=card.exp_year,
        funding=card.funding,
        holder_name=card.holder_name,
    )
    payment = Payment(
        id=new_id(PAYMENT),
        merchant_id=merchant_id,
        amount=amount,
        currency=currency,
        status=PaymentStatus.PROCESSING,
        capture=request.capture,
        amount_captured=0,
        amount_refunded=0,
        payment_method={
            "type": "card",
            "card": {
                "brand": card.brand,
                "last4": card.last4,
                "exp_month": card.exp_month,
                "exp_year": card.exp_year,
                "funding": card.funding,
                "fingerprint": fingerprint,
            },
        },
        card_id=card_id,
        reference=reference,
        description=request.description,
        metadata=metadata,
        customer=request.customer,
        return_url=return_url,
        failure_code=None,
        decline_code=None,
        failure_message=None,
        next_action=None,
        processor=DEFAULT_PROCESSOR,
        created=now,
        updated=now,
        checkout_session_id=checkout_session_id,
    )
    if not await store.insert_payment(conn, payment, next_run_at=now):
        existing = await store.find_by_reference(conn, merchant_id, reference or "")
        raise DuplicateReference(
            f"A payment with reference {reference!r} already exists: {existing}",
            param="reference",
            payment=existing,
        )
    return payment  # a trigger on payments wakes the workers when this transaction commits


async def get_payment(conn: Conn, merchant_id: str, payment_id: str) -> Payment:
    payment = await store.get_payment(conn, merchant_id, payment_id)
    if payment is None:  # another merchant's payment is indistinguishable from a missing one
        raise NotFound(f"No such payment: {payment_id[:64]!r}", param="id")
    return payment


async def list_payments(
    conn: Conn,
    merchant_id: str,
    *,
    limit: int,
    starting_after: str | None,
    status: str | None,
    reference: str | None,
) -> tuple[list[Payment], bool]:
    if status is not None and status not in PaymentStatus.__members__.values():
        raise InvalidRequest("status: must be one of " + ", ".join(s.value for s in PaymentStatus), param="status")
    rows = await store.list_payments(
        conn, merchant_id, limit=limit + 1, starting_after=starting_after, status=status, reference=reference
    )
    return rows[:limit], len(rows) > limit


class CaptureIn(_Strict):
    amount: int | None = Field(default=None, description="At most the authorized amount; default: all of it.")


def _unexpected_state(payment: Payment, action: str) -> InvalidRequest:
    return InvalidRequest(
        f"This payment cannot be {action} because its status is {payment.status}.",
        code="payment_unexpected_state",
    )


async def _locked(conn: Conn, merchant_id: str, payment_id: str) -> Payment:
    payment = await store.lock_payment(conn, payment_id, merchant_id)
    if payment is None:
        raise NotFound(f"No such payment: {payment_id[:64]!r}", param="id")
    return payment


async def request_capture(conn: Conn, merchant_id: str, payment_id: str, request: CaptureIn) -> Payment:
    """Queue a capture of an authorized payment for the worker. Runs in the caller's transaction."""
    payment = await _locked(conn, merchant_id, payment_id)
    if payment.status != PaymentStatus.REQUIRES_CAPTURE:
        raise _unexpected_state(payment, "captured")
    amount = None
    if request.amount is not None:
        amount = money.validate_amount(request.amount, payment.currency)
        if amount > payment.amount:
            raise InvalidRequest(
                f"amount: cannot exceed the authorized amount ({payment.amount})",
                param="amount",
                code="amount_too_large",
            )
    pending = {a.operation for a in (await attempt_store.open_attempts(conn, [payment.id])).get(payment.id, [])}
    if pending & {"capture", "cancel"}:
        raise InvalidRequest(
            "A capture or cancel of this payment is already in progress.", code="payment_operation_in_progress"
        )
    attempt = Attempt(new_id(ATTEMPT), payment.id, "capture", payment.processor, amount=amount)
    await attempt_store.insert(conn, [attempt])
    await store.schedule_now(conn, payment.id, reset_tries=True)
    return payment


async def request_cancel(conn: Conn, merchant_id: str, payment_id: str) -> Payment:
    """Queue the void of an uncaptured payment (or one waiting for the shopper). Asking twice is harmless."""
    payment = await _locked(conn, merchant_id, payment_id)
    if payment.status not in (PaymentStatus.REQUIRES_CAPTURE, PaymentStatus.REQUIRES_ACTION):
        raise _unexpected_state(payment, "canceled")
    pending = {a.operation for a in (await attempt_store.open_attempts(conn, [payment.id])).get(payment.id, [])}
    if "capture" in pending:
        raise InvalidRequest("A capture of this payment is in progress.", code="payment_operation_in_progress")
    if "cancel" not in pending:
        await attempt_store.insert(conn, [Attempt(new_id(ATTEMPT), payment.id, "cancel", payment.processor)])
        await store.schedule_now(conn, payment.id, reset_tries=True)
    return payment
