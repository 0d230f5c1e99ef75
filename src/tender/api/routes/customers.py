"""/v1/customers: who a merchant charges again (Stripe's Customer), and their saved payment methods."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response

from tender.api import idempotent
from tender.api.deps import ContainerDep, Merchant, StartingAfter, json_body, text_query
from tender.api.openapi import IDEMPOTENT, JSON_BODY, MERCHANT_KEY, body_schema, responses
from tender.domain.recurring import MAX_EMAIL_LENGTH
from tender.errors import NoSuchObject, NotFound
from tender.services import customers as service
from tender.services import payment_methods
from tender.services.objects import customer_object, dumps, list_object, payment_method_object
from tender.services.validation import parse
from tender.store.db import Conn

router = APIRouter(tags=["customers"], responses=responses(*MERCHANT_KEY))

IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key")]
_ERRORS = responses(*JSON_BODY, NoSuchObject, NotFound, *IDEMPOTENT)


def _json(body: dict[str, Any], status_code: int = 200) -> Response:
    return Response(dumps(body), status_code=status_code, media_type="application/json")


@router.post(
    "/v1/customers",
    status_code=201,
    summary="Create a customer",
    responses=_ERRORS,
    openapi_extra={"requestBody": {"content": {"application/json": {"schema": body_schema(service.CustomerCreate)}}}},
)
async def create_customer(
    request: Request, merchant: Merchant, container: ContainerDep, idempotency_key: IdempotencyKey = None
) -> Response:
    """`test_clock`: the customer, its subscriptions and invoices live on that clock's time. `payment_method`:
    a saved method (pm_) attached to the new customer, and its default."""
    payload = await json_body(request)
    body = parse(service.CustomerCreate, payload)

    async def change(conn: Conn) -> dict[str, Any]:
        return customer_object(await service.create(conn, merchant.merchant_id, body))

    return await idempotent.post(
        container, merchant.merchant_id, idempotency_key, "/v1/customers", payload, change, status_code=201
    )


@router.get("/v1/customers", summary="List customers, newest first")
async def list_customers(
    merchant: Merchant,
    container: ContainerDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
    starting_after: StartingAfter = None,
    email: Annotated[str | None, text_query("Only customers with this exact email", MAX_EMAIL_LENGTH)] = None,
) -> Response:
    page = await service.list_(
        container.db, merchant.merchant_id, limit=limit, starting_after=starting_after, email=email
    )
    return _json(list_object([customer_object(c) for c in page.rows], has_more=page.has_more, url="/v1/customers"))


@router.get("/v1/customers/{customer_id}", summary="Retrieve a customer", responses=responses(NotFound))
async def get_customer(customer_id: str, merchant: Merchant, container: ContainerDep) -> Response:
    return _json(customer_object(await service.retrieve(container.db, merchant.merchant_id, customer_id)))


@router.post(
    "/v1/customers/{customer_id}",
    summary="Update a customer (email, name, metadata, default payment method)",
    responses=_ERRORS,
    openapi_extra={"requestBody": {"content": {"application/json": {"schema": body_schema(service.CustomerUpdate)}}}},
)
async def update_customer(
    customer_id: str,
    request: Request,
    merchant: Merchant,
    container: ContainerDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Only the fields sent change. `metadata` is merged: a key set to "" is removed. The default payment
    method (`default_payment_method` or `invoice_settings.default_payment_method`) must be attached to it."""
    payload = await json_body(request)
    body = parse(service.CustomerUpdate, payload)

    async def change(conn: Conn) -> dict[str, Any]:
        return customer_object(await service.update(conn, merchant.merchant_id, customer_id, body))

    path = f"/v1/customers/{customer_id}"
    return await idempotent.post(container, merchant.merchant_id, idempotency_key, path, payload, change)


@router.delete("/v1/customers/{customer_id}", summary="Delete a customer", responses=responses(NotFound))
async def delete_customer(customer_id: str, merchant: Merchant, container: ContainerDep) -> Response:
    """For good: it is not found again, and its subscriptions are canceled."""
    return _json(await service.delete(container.db, merchant.merchant_id, customer_id))


@router.get(
    "/v1/customers/{customer_id}/payment_methods",
    summary="List a customer's saved payment methods, newest first",
    responses=responses(NotFound),
)
async def list_customer_payment_methods(
    customer_id: str,
    merchant: Merchant,
    container: ContainerDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
    starting_after: StartingAfter = None,
) -> Response:
    page = await payment_methods.list_for_customer(
        container.db, merchant.merchant_id, customer_id, limit=limit, starting_after=starting_after
    )
    url = f"/v1/customers/{customer_id}/payment_methods"
    return _json(list_object([payment_method_object(m) for m in page.rows], has_more=page.has_more, url=url))
