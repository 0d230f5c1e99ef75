"""Customers: who a merchant charges again, with their saved cards, default method and (for tests) a test clock.

A customer created on a test clock lives on that clock's time, and so does everything it owns
(`now_for_customer`). Deleting a customer keeps its row (its payments name it) but it is never found again;
its subscriptions are canceled by services/billing.py's hook in the same transaction.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tender.domain.ids import CUSTOMER, MAX_ID_LENGTH, new_id
from tender.domain.payments import MAX_METADATA_KEYS, validate_metadata
from tender.domain.recurring import MAX_EMAIL_LENGTH, MAX_NAME_LENGTH, Customer
from tender.errors import InvalidRequest, NoSuchObject, NotFound
from tender.services import billing, payment_methods
from tender.services.objects import customer_object
from tender.store import customers as store
from tender.store import events
from tender.store import test_clocks as clock_store
from tender.store.db import Conn, Database, Page

IdField = Field(default=None, max_length=MAX_ID_LENGTH)
METADATA_DESCRIPTION = (
    "Your key-value pairs: at most 50 keys of 1 to 40 characters, each value a string of at most 500 characters."
)


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class InvoiceSettingsIn(_Strict):
    default_payment_method: str | None = Field(
        default=None, max_length=MAX_ID_LENGTH, description="A pm_ id attached to this customer; null unsets it."
    )


class CustomerCreate(_Strict):
    email: str | None = Field(default=None, max_length=MAX_EMAIL_LENGTH, description="At most 512 characters.")
    name: str | None = Field(default=None, max_length=MAX_NAME_LENGTH, description="At most 256 characters.")
    metadata: dict[str, Any] | None = Field(
        default=None, max_length=MAX_METADATA_KEYS, description=METADATA_DESCRIPTION
    )
    test_clock: str | None = Field(
        default=None, max_length=MAX_ID_LENGTH, description="A clock_ id: the customer lives on that clock's time."
    )
    payment_method: str | None = Field(
        default=None,
        max_length=MAX_ID_LENGTH,
        description="A pm_ id to attach to the new customer; it becomes the default payment method.",
    )
    invoice_settings: InvoiceSettingsIn | None = None


class CustomerUpdate(_Strict):
    email: str | None = Field(default=None, max_length=MAX_EMAIL_LENGTH, description='"" or null unsets it.')
    name: str | None = Field(default=None, max_length=MAX_NAME_LENGTH, description='"" or null unsets it.')
    metadata: dict[str, Any] | None = Field(
        default=None,
        max_length=MAX_METADATA_KEYS,
        description="Merged into the customer's metadata; a key set to an empty string is removed.",
    )
    default_payment_method: str | None = Field(
        default=None, max_length=MAX_ID_LENGTH, description="A pm_ id attached to this customer; null unsets it."
    )
    invoice_settings: InvoiceSettingsIn | None = None


def _email(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    # Loose on purpose (as Stripe): one @ with something either side, no spaces or control characters.
    local, at, domain = value.partition("@")
    if not at or not local or not domain or not value.isprintable() or any(c.isspace() for c in value):
        raise InvalidRequest("email: must be an email address", param="email")
    return value


def _name(value: str | None) -> str | None:
    if value is None:
        return None
    if not value.isprintable():
        raise InvalidRequest("name: must be printable text", param="name")
    return value.strip() or None


async def create(conn: Conn, merchant_id: str, request: CustomerCreate, *, now: datetime | None = None) -> Customer:
    """Insert the customer (and attach `payment_method` to it), with its `customer.created` event."""
    now = now or datetime.now(UTC)
    email, name = _email(request.email), _name(request.name)
    metadata = validate_metadata(request.metadata)
    clock_id = None
    if request.test_clock is not None:
        clock = await clock_store.get(conn, merchant_id, request.test_clock)
        if clock is None:
            raise NoSuchObject("test_clock: no such test clock", param="test_clock")
        clock_id = clock.id
    default_param = "invoice_settings.default_payment_method"
    default = request.invoice_settings.default_payment_method if request.invoice_settings else None
    if default is not None and default != request.payment_method:
        # A new customer has no method yet but the one attached now.
        raise NoSuchObject(f"{default_param}: not a payment method of this customer", param=default_param)
    customer = Customer(
        id=new_id(CUSTOMER),
        merchant_id=merchant_id,
        email=email,
        name=name,
        metadata=metadata,
        default_payment_method=None,
        test_clock_id=clock_id,
        deleted=None,
        created=now,
        updated=now,
    )
    await store.insert(conn, customer)
    if request.payment_method is not None:
        await payment_methods.attach(conn, merchant_id, request.payment_method, customer.id, param="payment_method")
        await store.set_default_payment_method(conn, customer.id, request.payment_method, now)
        customer = await get(conn, merchant_id, customer.id)
    await events.record(conn, [(merchant_id, "customer.created", customer.id, customer_object(customer))])
    return customer


async def get(conn: Conn, merchant_id: str, customer_id: str, *, lock: bool = False) -> Customer:
    customer = await store.get(conn, merchant_id, customer_id, lock=lock)
    if customer is None:  # another merchant's, or deleted: indistinguishable from a missing one
        raise NotFound("No such customer.", param="id")
    return customer


async def retrieve(db: Database, merchant_id: str, customer_id: str) -> Customer:
    async with db.connection() as conn:
        return await get(conn, merchant_id, customer_id)


async def list_(
    db: Database, merchant_id: str, *, limit: int, starting_after: str | None, email: str | None
) -> Page[Customer]:
    async with db.connection() as conn:
        return await store.list_(conn, merchant_id, limit=limit, starting_after=starting_after, email=email)


def _merged_metadata(current: dict[str, str], change: dict[str, Any]) -> dict[str, str]:
    """Stripe's merge: keys sent are set, a key sent with "" is removed, keys not sent stay."""
    checked = validate_metadata(change)
    merged = {**current, **checked}
    merged = {k: v for k, v in merged.items() if v != ""}
    return validate_metadata(merged)  # at most 50 keys once merged


async def update(
    conn: Conn, merchant_id: str, customer_id: str, request: CustomerUpdate, *, now: datetime | None = None
) -> Customer:
    """Change what the request sends; the rest stays."""
    now = now or datetime.now(UTC)
    customer = await get(conn, merchant_id, customer_id, lock=True)
    sent = request.model_fields_set
    email = _email(request.email) if "email" in sent else customer.email
    name = _name(request.name) if "name" in sent else customer.name
    metadata = _merged_metadata(customer.metadata, request.metadata or {}) if "metadata" in sent else customer.metadata
    default = customer.default_payment_method
    settings = request.invoice_settings
    for param, given, value in (
        ("default_payment_method", "default_payment_method" in sent, request.default_payment_method),
        (
            "invoice_settings.default_payment_method",
            settings is not None and "default_payment_method" in settings.model_fields_set,
            settings.default_payment_method if settings else None,
        ),
    ):
        if given:
            if value is not None:
                await payment_methods.get_attached(conn, merchant_id, value, customer.id, param=param)
            default = value
    return await store.update(
        conn, customer.id, email=email, name=name, metadata=metadata, default_payment_method=default, now=now
    )


async def delete(db: Database, merchant_id: str, customer_id: str, *, now: datetime | None = None) -> dict[str, Any]:
    """Deleted for good (a second delete is a 404); its subscriptions are canceled (services/billing.py) in the
    same transaction."""
    async with db.transaction() as conn:
        customer = await get(conn, merchant_id, customer_id, lock=True)
        await store.mark_deleted(conn, customer.id, now or datetime.now(UTC))
        await billing.on_customer_deleted(conn, customer)
    return {"id": customer.id, "object": "customer", "deleted": True}


async def now_for_customer(conn: Conn, customer_id: str) -> datetime:
    """The customer's time: its test clock's frozen time, or the wall clock."""
    return await store.clock_time(conn, customer_id) or datetime.now(UTC)
