"""Accepting payments: synchronous checks, the card into the vault, the payment row due for the worker.

Alternative methods (upi, wallet, netbanking, bnpl) have nothing secret: their public view is stored on
the payment and sent to the processor as it is.

Nothing slow happens here: the worker's payment pump does the processor call. The request bodies
(PaymentCreate, CaptureIn) are services/payment_requests.py's.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from tender.domain import cards, methods, money
from tender.domain import routing as routing_rules
from tender.domain.ids import ATTEMPT, PAYMENT, new_id
from tender.domain.models import Attempt, Payment
from tender.domain.payments import PaymentStatus, validate_metadata, validate_reference
from tender.domain.recurring import SavedPaymentMethod
from tender.domain.routing import CARD_ONLY_PROCESSORS, RoutingRules
from tender.errors import (
    AmountTooLarge,
    DuplicateReference,
    InvalidRequest,
    NoSuchObject,
    NotFound,
    ParameterMissing,
    PaymentOperationInProgress,
    PaymentUnexpectedState,
)
from tender.processors.base import SavedMethod
from tender.processors.registry import FACTORIES as KNOWN_PROCESSORS
from tender.services import payment_methods, routing, velocity
from tender.services.card_vault import new_card
from tender.services.payment_requests import (
    APM_MODELS,
    ApmMethodIn,
    BnplMethodIn,
    CaptureIn,
    CardMethodIn,
    NetbankingMethodIn,
    PaymentCreate,
    UpiMethodIn,
    WalletMethodIn,
)
from tender.services.validation import parse
from tender.store import attempts as attempt_store
from tender.store import customers as customer_store
from tender.store import payment_methods as method_store
from tender.store import payments as store
from tender.store.db import Conn, Database
from tender.store.payments import NewCard
from tender.vault import Vault

log = logging.getLogger(__name__)

APM_TYPES = methods.APM_TYPES


def _check_return_url(url: str | None) -> str | None:
    if url is not None and not url.startswith(("https://", "http://")):
        raise InvalidRequest("return_url: must be an http(s) URL", param="return_url")
    return url


def _parse_method(raw: str | dict[str, Any]) -> CardMethodIn | ApmMethodIn:
    if isinstance(raw, str):
        # Never quoted back: a card number sent here as a string is the classic mistake.
        raise NoSuchObject(
            "payment_method: no such saved payment method (give a pm_ id or a card object)", param="payment_method"
        )
    kind = raw.get("type")
    if kind == "card":
        return parse(CardMethodIn, raw, prefix="payment_method")
    if isinstance(kind, str) and kind in APM_MODELS:
        return parse(APM_MODELS[kind], raw, prefix="payment_method")
    raise InvalidRequest(
        "payment_method.type: must be one of card, " + ", ".join(APM_TYPES), param="payment_method.type"
    )


def _apm_view(method: ApmMethodIn) -> dict[str, Any]:
    """The payment's public payment_method: `{"type": T, T: {...}}`, every field shown (null if not given)."""
    match method:
        case UpiMethodIn():
            return {"type": "upi", "upi": {"vpa": methods.validate_vpa(method.upi.vpa)}}
        case WalletMethodIn():
            return {"type": "wallet", "wallet": {"provider": method.wallet.provider if method.wallet else None}}
        case NetbankingMethodIn():
            bank = method.netbanking.bank if method.netbanking else None
            return {"type": "netbanking", "netbanking": {"bank": bank}}
        case BnplMethodIn():
            return {"type": "bnpl", "bnpl": {"provider": method.bnpl.provider if method.bnpl else None}}


def card_row(vault: Vault, merchant_id: str, card: cards.ValidatedCard) -> tuple[NewCard, dict[str, Any]]:
    """The card's vault row, encrypted (no database needed), and the payment's public payment_method."""
    row = new_card(vault, merchant_id, card, keep_cvc=True)
    view = {
        "type": "card",
        "card": {
            "brand": card.brand,
            "last4": card.last4,
            "exp_month": card.exp_month,
            "exp_year": card.exp_year,
            "funding": card.funding,
            "fingerprint": row.fingerprint,
        },
    }
    return row, view


async def _vault_card(
    conn: Conn, vault: Vault, merchant_id: str, card: cards.ValidatedCard
) -> tuple[str, dict[str, Any]]:
    """The card into the vault, encrypted: its vault id and the payment's public payment_method."""
    row, view = card_row(vault, merchant_id, card)
    await store.insert_card(conn, row)
    return row.id, view


async def _saved_method(conn: Conn, merchant_id: str, pm_id: str, customer: str | None) -> SavedPaymentMethod:
    """The saved method a payment charges: this merchant's, attached to the customer the request names."""
    saved = await method_store.get(conn, merchant_id, pm_id) if pm_id.startswith("pm_") else None
    if saved is None:  # another merchant's is indistinguishable from none; the value is never quoted back
        raise NoSuchObject(
            "payment_method: no such saved payment method (give a pm_ id or a card object)", param="payment_method"
        )
    if saved.customer_id is None:
        raise InvalidRequest(
            "payment_method: this payment method is not attached to a customer; attach it first",
            param="payment_method",
        )
    if customer is None:
        raise ParameterMissing("customer: required with a saved payment method (its customer's id)", param="customer")
    if customer != saved.customer_id:
        raise InvalidRequest("customer: the payment method belongs to another customer", param="customer")
    return saved


def _check_off_session(request: PaymentCreate, saved: SavedPaymentMethod | None) -> None:
    """`off_session` charges a saved method without the shopper."""
    if request.off_session and saved is None:
        raise InvalidRequest(
            "off_session: a merchant-initiated payment charges a saved payment method (payment_method: pm_...)",
            param="off_session",
        )


async def _check_future_usage(
    conn: Conn, merchant_id: str, request: PaymentCreate, method_type: str, saved: SavedPaymentMethod | None
) -> None:
    """`off_session` charges a saved method without the shopper; `setup_future_usage` saves a card to a customer."""
    _check_off_session(request, saved)
    if request.setup_future_usage is None or saved is not None:  # a saved method is saved already
        return
    if method_type != "card":
        raise InvalidRequest("setup_future_usage: only a card can be saved", param="setup_future_usage")
    if request.customer is None:
        raise ParameterMissing("customer: required with setup_future_usage (the card is saved to it)", param="customer")
    found = (
        await customer_store.get(conn, merchant_id, request.customer) if request.customer.startswith("cus_") else None
    )
    if found is None:
        raise NoSuchObject("customer: no such customer", param="customer")


def _saved_view(saved: SavedPaymentMethod) -> dict[str, Any]:
    """The payment's public payment_method for a saved card: the method's own view."""
    return {
        "type": "card",
        "card": {
            "brand": saved.brand,
            "last4": saved.last4,
            "exp_month": saved.exp_month,
            "exp_year": saved.exp_year,
            "funding": saved.funding,
            "fingerprint": saved.fingerprint,
        },
    }


def choose_processor(asked: str | None, *, default: str, available: Collection[str] | None) -> str:
    """The processor a new payment goes to: the one asked for if it is on, else a 400 naming `processor`."""
    if asked is None:
        return default
    on = set(available) if available is not None else {default}
    if asked in on:
        return asked
    # The value is not echoed: a merchant's mistake could put anything there.
    state = "an unknown processor" if asked not in KNOWN_PROCESSORS else "a processor not configured on this Tender"
    raise InvalidRequest(f"processor: {state}; available: {', '.join(sorted(on))}", param="processor")


@dataclass(frozen=True, slots=True)
class NewPayment:
    """A payment request that passed every check needing no database. What remains is its route, the card's
    velocity check and the writes: one by one in `create_payment`, or in batches (services/intake.py)."""

    id: str
    merchant_id: str
    request: PaymentCreate = field(repr=False)  # its payment_method may hold a card number and CVC
    now: datetime
    forced: bool  # the request named its processor: the route is that one alone
    processor: str  # the one asked for, else the default
    currency: str
    amount: int
    method_type: str
    card: cards.ValidatedCard | None  # a new card (holds the number and CVC: never log it)
    apm_view: dict[str, Any] | None  # an alternative method's public view
    saved: SavedPaymentMethod | None
    reference: str | None
    metadata: dict[str, str]
    return_url: str | None

    @property
    def card_brand(self) -> str | None:
        return self.card.brand if self.card is not None else self.saved.brand if self.saved is not None else None


def needs_no_lookup(request: PaymentCreate) -> bool:
    """A new card or alternative method, nothing to save: `validate_new` checks it without the database."""
    return isinstance(request.payment_method, dict) and request.setup_future_usage is None


def validate_new(
    merchant_id: str,
    request: PaymentCreate,
    *,
    processor: str,
    available: Collection[str] | None,
    now: datetime | None = None,
) -> NewPayment:
    """Every check of a request for which `needs_no_lookup`, in the order `create_payment` makes them (the same
    400 for the same mistakes)."""
    now = now or datetime.now(UTC)
    forced, processor, currency, amount = _head(request, processor, available)
    method = _parse_method(request.payment_method)
    _check_off_session(request, None)
    return _tail(merchant_id, request, now, forced, processor, currency, amount, method, None)


def _head(request: PaymentCreate, processor: str, available: Collection[str] | None) -> tuple[bool, str, str, int]:
    forced = request.processor is not None
    processor = choose_processor(request.processor, default=processor, available=available)
    currency = money.normalize_currency(request.currency)
    return forced, processor, currency, money.validate_amount(request.amount, currency)


def _tail(
    merchant_id: str,
    request: PaymentCreate,
    now: datetime,
    forced: bool,
    processor: str,
    currency: str,
    amount: int,
    method: CardMethodIn | ApmMethodIn | None,
    saved: SavedPaymentMethod | None,
) -> NewPayment:
    card: cards.ValidatedCard | None = None
    apm_view: dict[str, Any] | None = None
    if isinstance(method, CardMethodIn):
        card = cards.validate_card(
            number=method.card.number,
            exp_month=method.card.exp_month,
            exp_year=method.card.exp_year,
            cvc=method.card.cvc,
            holder_name=method.card.holder_name,
            today=now.date(),
        )
    elif method is not None:
        if forced and processor in CARD_ONLY_PROCESSORS:  # refused now, rather than failed later by the worker
            raise InvalidRequest(
                f"payment_method.type: the {processor} processor takes cards only", param="payment_method.type"
            )
        apm_view = _apm_view(method)
    method_type = method.type if method is not None else "card"
    reference = validate_reference(request.reference)
    metadata = validate_metadata(request.metadata) if request.metadata is not None else {}
    return_url = _check_return_url(request.return_url)
    if return_url is None and method_type in methods.REDIRECT_TYPES:
        raise ParameterMissing(
            f"return_url: required for {method_type} payments (the shopper comes back there after approving)",
            param="return_url",
        )
    return NewPayment(
        id=new_id(PAYMENT),
        merchant_id=merchant_id,
        request=request,
        now=now,
        forced=forced,
        processor=processor,
        currency=currency,
        amount=amount,
        method_type=method_type,
        card=card,
        apm_view=apm_view,
        saved=saved,
        reference=reference,
        metadata=metadata,
        return_url=return_url,
    )


def route_of(new: NewPayment, rules: RoutingRules | None, *, on: Collection[str]) -> list[str]:
    """The payment's processors, in order (never empty): the one the request names, else the merchant's first
    matching rule (`rules`; None: it has none) or the default, less the processors off (`on` is what is on) or
    unable to take the method. Raises ValidationFailed (param `payment_method.type` or `processor`) when none is
    left. The same for both paths: one by one (`create_payment`) and in batches (services/intake.py)."""
    if new.forced:
        return [new.processor]
    candidates = routing_rules.route_for(
        rules,
        payment_id=new.id,
        method_type=new.method_type,
        currency=new.currency,
        card_brand=new.card_brand,
        amount=new.amount,
        default=[new.processor],
    )
    return routing_rules.usable(candidates, on=on, card_only=CARD_ONLY_PROCESSORS, method_type=new.method_type)


def payment_record(
    new: NewPayment,
    *,
    route: list[str],
    card_id: str | None,
    payment_method: dict[str, Any],
    checkout_session_id: str | None = None,
    invoice_id: str | None = None,
) -> Payment:
    """The `processing` payment as it is inserted, in the hands of its route's first processor."""
    return Payment(
        id=new.id,
        merchant_id=new.merchant_id,
        amount=new.amount,
        currency=new.currency,
        status=PaymentStatus.PROCESSING,
        capture=new.request.capture,
        amount_captured=0,
        amount_refunded=0,
        payment_method=payment_method,
        card_id=card_id,
        reference=new.reference,
        description=new.request.description,
        metadata=new.metadata,
        customer=new.request.customer,
        return_url=new.return_url,
        failure_code=None,
        decline_code=None,
        failure_message=None,
        next_action=None,
        processor=route[0],
        created=new.now,
        updated=new.now,
        checkout_session_id=checkout_session_id,
        route=route,
        invoice_id=invoice_id,
        payment_method_id=new.saved.id if new.saved is not None else None,
        off_session=new.request.off_session,
        setup_future_usage=new.request.setup_future_usage,
    )


async def create_payment(
    conn: Conn,
    vault: Vault | None,
    merchant_id: str,
    request: PaymentCreate,
    *,
    processor: str,
    now: datetime | None = None,
    checkout_session_id: str | None = None,
    guard: velocity.Guard | None = None,
    available: Collection[str] | None = None,
    invoice_id: str | None = None,
) -> Payment:
    """Validate, vault the card (if a card) and insert the payment, due at once, routed by the merchant's
    rules (services/routing.py) among the processors `available` (those that are on; None: only the default,
    `processor`: the container's default_processor), unless the request names one of them. Runs in the
    caller's transaction. A card payment over one of `guard`'s velocity limits raises RateLimited before any
    write."""
    now = now or datetime.now(UTC)
    forced, processor, currency, amount = _head(request, processor, available)
    # A saved method (pm_...) is the merchant's: its card view comes from it, and it has no CVC by design.
    saved: SavedPaymentMethod | None = None
    method: CardMethodIn | ApmMethodIn | None = None
    if isinstance(request.payment_method, str):
        saved = await _saved_method(conn, merchant_id, request.payment_method, request.customer)
    else:
        method = _parse_method(request.payment_method)
    await _check_future_usage(conn, merchant_id, request, method.type if method is not None else "card", saved)
    new = _tail(merchant_id, request, now, forced, processor, currency, amount, method, saved)
    # Routing: the merchant's first matching rule (one query), less what is off or cannot take the method;
    # a processor the request names is the only one. Before any write: a 400 here leaves nothing behind.
    rules = None if forced else await routing.rules_of(conn, merchant_id)
    route = route_of(new, rules, on=available if available is not None else (new.processor,))
    card = new.card
    if card is not None and guard is not None:
        assert vault is not None, "a card payment needs the vault"
        fingerprint = vault.fingerprint(card.number, merchant_id=merchant_id)
        await guard.check(
            conn, merchant_id=merchant_id, fingerprint=fingerprint, session_id=checkout_session_id, now=now
        )
    if card is not None:
        assert vault is not None, "a card payment needs the vault"
        card_id, payment_method = await _vault_card(conn, vault, merchant_id, card)
    elif saved is not None:
        card_id, payment_method = saved.card_id, _saved_view(saved)
    else:
        assert new.apm_view is not None
        card_id, payment_method = None, new.apm_view
    payment = payment_record(
        new,
        route=route,
        card_id=card_id,
        payment_method=payment_method,
        checkout_session_id=checkout_session_id,
        invoice_id=invoice_id,
    )
    if not await store.insert_payment(conn, payment, next_run_at=now):
        existing = await store.find_by_reference(conn, merchant_id, new.reference or "")
        raise DuplicateReference(
            f"A payment with this reference already exists: {existing}",
            param="reference",
            payment=existing,
        )
    if card is not None and guard is not None:
        await guard.record(conn, payment.id, now)
    return payment  # a trigger on payments wakes the workers when this transaction commits


async def create_off_session(
    conn: Conn,
    *,
    merchant_id: str,
    customer_id: str,
    payment_method_id: str,
    amount: int,
    currency: str,
    reference: str,
    metadata: dict[str, str] | None,
    invoice_id: str | None,
    description: str | None,
    processor: str,
    available: Collection[str] | None = None,
) -> Payment:
    """A merchant-initiated charge of a saved card (a subscription's renewal): a `processing` payment due at
    once, routed like any payment (`processor`: the container's default_processor; `available`: the processors
    that are on). No CVC and no Idempotency-Key: its unique `reference` (e.g. `inv:<invoice>:<attempt n>`)
    makes it exactly once, so calling again with a reference already taken by a payment of the same invoice
    answers that payment (a renewal re-run after a crash finds it, never makes a second one). Raises
    NoSuchObject / InvalidRequest naming the field as POST /v1/payments would. Runs in the caller's
    transaction; `created` and `next_run_at` are wall-clock time (the pump runs it now, whatever a test clock
    says)."""
    request = PaymentCreate(
        amount=amount,
        currency=currency,
        payment_method=payment_method_id,
        customer=customer_id,
        off_session=True,
        reference=reference,
        metadata=metadata,
        description=description,
    )
    try:
        return await create_payment(
            conn, None, merchant_id, request, processor=processor, available=available, invoice_id=invoice_id
        )
    except DuplicateReference:
        existing = await store.find_by_reference(conn, merchant_id, reference)
        found = await store.get_payment(conn, merchant_id, existing) if existing else None
        if found is None or found.invoice_id != invoice_id:
            raise
        return found


async def saved_methods_of(conn: Conn, payments: list[Payment]) -> dict[str, SavedMethod]:
    """The saved card each of these payments charges (by payment id), with what processors made of it before."""
    found: dict[str, SavedMethod] = {}
    for p in payments:
        if p.payment_method_id and (saved := await method_store.get(conn, p.merchant_id, p.payment_method_id)):
            found[p.id] = SavedMethod(saved.id, dict(saved.processor_refs))
    return found


async def remember_saved_refs(conn: Conn, created: list[tuple[str, str, dict[str, Any]]]) -> None:
    """(saved method id, processor, what the processor made of it): kept, so it is never created there twice."""
    for payment_method_id, processor, refs in created:
        await method_store.set_processor_ref(conn, payment_method_id, processor, refs)


async def save_cards_for_future_use(conn: Conn, changed: list[tuple[Payment, PaymentStatus]]) -> None:
    """setup_future_usage: a card payment just authorized (succeeded, or requires_capture) has its card saved to
    its customer (services/payment_methods.py: the payment's vault row, its CVC erased: a saved card never keeps
    one) and names the saved method, in the status change's transaction. A customer deleted meanwhile saves
    nothing: the payment's own change must not fail for it (a savepoint keeps the transaction usable)."""
    for payment, status in changed:
        if (
            payment.setup_future_usage != "off_session"
            or payment.payment_method_id is not None
            or status not in (PaymentStatus.SUCCEEDED, PaymentStatus.REQUIRES_CAPTURE)
            or not payment.customer
            or payment.card_id is None
        ):
            continue
        try:
            async with conn.transaction():
                saved_id = await payment_methods.save_card_from_payment(
                    conn, replace(payment, status=status), payment.customer
                )
                await store.set_payment_method(conn, payment.id, saved_id)
        except (NoSuchObject, NotFound, ValueError) as exc:
            log.warning("payment %s: its card was not saved for future use (%s)", payment.id, type(exc).__name__)


async def get_payment(db: Database, merchant_id: str, payment_id: str) -> Payment:
    async with db.connection() as conn:
        payment = await store.get_payment(conn, merchant_id, payment_id)
    if payment is None:  # another merchant's payment is indistinguishable from a missing one
        raise NotFound("No such payment.", param="id")
    return payment


async def list_payments(
    db: Database,
    merchant_id: str,
    *,
    limit: int,
    starting_after: str | None,
    status: str | None,
    reference: str | None,
) -> tuple[list[Payment], bool]:
    if status is not None and status not in PaymentStatus.__members__.values():
        raise InvalidRequest("status: must be one of " + ", ".join(s.value for s in PaymentStatus), param="status")
    async with db.connection() as conn:
        return await store.list_payments(
            conn, merchant_id, limit=limit, starting_after=starting_after, status=status, reference=reference
        )


def _unexpected_state(payment: Payment, action: str) -> PaymentUnexpectedState:
    return PaymentUnexpectedState(f"This payment cannot be {action} because its status is {payment.status}.")


async def _locked(conn: Conn, merchant_id: str, payment_id: str) -> Payment:
    payment = await store.lock_payment(conn, payment_id, merchant_id)
    if payment is None:
        raise NotFound("No such payment.", param="id")
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
            raise AmountTooLarge(f"amount: cannot exceed the authorized amount ({payment.amount})", param="amount")
    pending = {a.operation for a in (await attempt_store.open_attempts(conn, [payment.id])).get(payment.id, [])}
    if pending & {"capture", "cancel"}:
        raise PaymentOperationInProgress("A capture or cancel of this payment is already in progress.")
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
        raise PaymentOperationInProgress("A capture of this payment is in progress.")
    if "cancel" not in pending:
        await attempt_store.insert(conn, [Attempt(new_id(ATTEMPT), payment.id, "cancel", payment.processor)])
        await store.schedule_now(conn, payment.id, reset_tries=True)
    return payment
