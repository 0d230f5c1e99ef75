"""Saved payment methods (`pm_...`): a card kept for later charges, optionally attached to a customer.

The number goes into the vault (vault_cards) encrypted, as for a card payment, but without its CVC: a saved
card never keeps one (it is checked if given, then dropped). Saving a card neither charges nor verifies it
with a processor. Its fingerprint is the vault's keyed one, so the same card saved twice by one merchant has
the same fingerprint, and nothing links it across merchants.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tender.domain import cards
from tender.domain.ids import MAX_ID_LENGTH, PAYMENT_METHOD, new_id
from tender.domain.models import Payment
from tender.domain.payments import PaymentStatus
from tender.domain.recurring import SavedPaymentMethod
from tender.errors import NoSuchObject, NotFound, PaymentMethodUnexpectedState
from tender.services.card_vault import new_card
from tender.services.objects import payment_method_object
from tender.store import customers as customer_store
from tender.store import events
from tender.store import payment_methods as store
from tender.store import payments as payment_store
from tender.store.db import Conn, Database, Page
from tender.vault import Vault


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class SavedCardIn(_Strict):
    number: str = Field(
        max_length=32, description="The card number (PAN), 12 to 19 digits, spaces or dashes allowed; stored encrypted."
    )
    exp_month: int
    exp_year: int
    cvc: str | None = Field(
        default=None, max_length=4, description="Checked if given (3 digits, 4 for Amex), never stored."
    )
    holder_name: str | None = Field(
        default=None, max_length=cards.MAX_HOLDER_NAME, description="At most 200 characters."
    )


class PaymentMethodCreate(_Strict):
    type: Literal["card"]
    card: SavedCardIn
    customer: str | None = Field(
        default=None, max_length=MAX_ID_LENGTH, description="A cus_ id to attach it to (secret key only)."
    )


class AttachIn(_Strict):
    customer: str = Field(max_length=MAX_ID_LENGTH, description="The cus_ id to attach it to.")


class DetachIn(_Strict):
    pass  # no parameters: a body, if any, must be empty


async def create(
    conn: Conn, vault: Vault, merchant_id: str, request: PaymentMethodCreate, *, now: datetime | None = None
) -> SavedPaymentMethod:
    """Validate the card, vault its number (no CVC) and save the method; attach it to `customer` if given."""
    now = now or datetime.now(UTC)
    c = request.card
    card = cards.validate_card(
        number=c.number, exp_month=c.exp_month, exp_year=c.exp_year, cvc=c.cvc, holder_name=c.holder_name,
        today=now.date(), param_prefix="card", require_cvc=False,
    )  # fmt: skip
    if request.customer is not None:  # before any write: a 400 leaves nothing behind
        await _customer(conn, merchant_id, request.customer, param="customer")
    row = new_card(vault, merchant_id, card, keep_cvc=False)  # a saved card keeps no CVC
    await payment_store.insert_card(conn, row)
    method = SavedPaymentMethod(
        id=new_id(PAYMENT_METHOD), merchant_id=merchant_id, customer_id=None, card_id=row.id, type="card",
        brand=card.brand, last4=card.last4, exp_month=card.exp_month, exp_year=card.exp_year, funding=card.funding,
        fingerprint=row.fingerprint, created=now, updated=now,
    )  # fmt: skip
    await store.insert(conn, method)
    if request.customer is not None:
        method = await attach(conn, merchant_id, method.id, request.customer, now=now)
    return method


async def _customer(conn: Conn, merchant_id: str, customer_id: str, *, param: str) -> str:
    customer = await customer_store.get(conn, merchant_id, customer_id)
    if customer is None:
        raise NoSuchObject(f"{param}: no such customer", param=param)
    return customer.id


async def get(conn: Conn, merchant_id: str, payment_method_id: str, *, lock: bool = False) -> SavedPaymentMethod:
    method = await store.get(conn, merchant_id, payment_method_id, lock=lock)
    if method is None:  # another merchant's is indistinguishable from a missing one
        raise NotFound("No such payment method.", param="id")
    return method


async def retrieve(db: Database, merchant_id: str, payment_method_id: str) -> SavedPaymentMethod:
    async with db.connection() as conn:
        return await get(conn, merchant_id, payment_method_id)


async def get_attached(
    conn: Conn, merchant_id: str, payment_method_id: str, customer_id: str, *, param: str
) -> SavedPaymentMethod:
    """The method, if it is attached to this customer; else a 400 naming `param` (for a parameter that names a
    method to charge or make the default)."""
    method = await store.get(conn, merchant_id, payment_method_id)
    if method is None or method.customer_id != customer_id:
        raise NoSuchObject(f"{param}: no such payment method attached to this customer", param=param)
    return method


async def attach(
    conn: Conn,
    merchant_id: str,
    payment_method_id: str,
    customer_id: str,
    *,
    param: str | None = None,
    now: datetime | None = None,
) -> SavedPaymentMethod:
    """Attach to the customer (again: nothing changes); `payment_method.attached` when it changes. `param`:
    the method is named by a parameter (a 400 if missing) rather than the path (a 404)."""
    customer_id = await _customer(conn, merchant_id, customer_id, param="customer")
    method = await store.get(conn, merchant_id, payment_method_id, lock=True)
    if method is None:
        if param is not None:
            raise NoSuchObject(f"{param}: no such payment method", param=param)
        raise NotFound("No such payment method.", param="id")
    if method.customer_id == customer_id:
        return method
    if method.customer_id is not None:
        raise PaymentMethodUnexpectedState(
            "This payment method is attached to another customer: detach it first.", param=param or "id"
        )
    method = await store.set_customer(conn, method.id, customer_id, now or datetime.now(UTC))
    await events.record(conn, [(merchant_id, "payment_method.attached", method.id, payment_method_object(method))])
    return method


async def detach(
    conn: Conn, merchant_id: str, payment_method_id: str, *, now: datetime | None = None
) -> SavedPaymentMethod:
    """No longer the customer's (nor its default). Detaching a method attached to no one is harmless."""
    now = now or datetime.now(UTC)
    method = await get(conn, merchant_id, payment_method_id, lock=True)
    if method.customer_id is None:
        return method
    await customer_store.clear_default_payment_method(conn, method.id, now)
    return await store.set_customer(conn, method.id, None, now)


async def list_for_customer(
    db: Database, merchant_id: str, customer_id: str, *, limit: int, starting_after: str | None
) -> Page[SavedPaymentMethod]:
    async with db.connection() as conn:
        if await customer_store.get(conn, merchant_id, customer_id) is None:
            raise NotFound("No such customer.", param="id")
        return await store.list_for_customer(conn, merchant_id, customer_id, limit=limit, starting_after=starting_after)


_AUTHORIZING = frozenset({PaymentStatus.PROCESSING, PaymentStatus.REQUIRES_ACTION})


async def save_card_from_payment(conn: Conn, payment: Payment, customer_id: str) -> str:
    """Save a card payment's card to the customer (setup_future_usage), in the caller's transaction; returns the
    pm_ id. Once per card: a second call for the same payment returns the same method. The method shares the
    payment's vault row; its CVC is erased now if the authorization has ended (else the payment path erases it
    when it ends, as for every card payment), so a saved card never keeps its CVC."""
    if payment.card_id is None:
        raise ValueError("only a card payment's card can be saved")
    existing = await store.find_by_card(conn, payment.card_id)
    if existing is not None:
        return existing.id
    view = await store.vault_card_view(conn, payment.card_id)
    if view is None or view["merchant_id"] != payment.merchant_id:
        raise ValueError("the payment's card is not in the vault")
    if payment.status not in _AUTHORIZING:
        await payment_store.erase_cvcs(conn, [payment.card_id])
    shown = payment.payment_method.get("card") or {}
    now = datetime.now(UTC)
    method = SavedPaymentMethod(
        id=new_id(PAYMENT_METHOD), merchant_id=payment.merchant_id, customer_id=None, card_id=payment.card_id,
        type="card", brand=view["brand"], last4=view["last4"], exp_month=view["exp_month"],
        exp_year=view["exp_year"], funding=shown.get("funding") or view["funding"], fingerprint=view["fingerprint"],
        created=now, updated=now,
    )  # fmt: skip
    await store.insert(conn, method)
    await attach(conn, payment.merchant_id, method.id, customer_id, param="customer", now=now)
    return method.id
