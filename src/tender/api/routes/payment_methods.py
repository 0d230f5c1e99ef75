"""/v1/payment_methods: cards saved for later charges (the number in the vault, never the CVC)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request, Response

from tender.api import idempotent
from tender.api.deps import ContainerDep, Merchant, any_key, json_body
from tender.api.openapi import IDEMPOTENT, JSON_BODY, MERCHANT_KEY, body_schema, responses
from tender.errors import DomainRuleViolated, NoSuchObject, NotFound, PaymentMethodUnexpectedState, SecretKeyRequired
from tender.services import payment_methods as service
from tender.services.merchants import Principal
from tender.services.objects import dumps, payment_method_object
from tender.services.validation import parse
from tender.store.db import Conn

router = APIRouter(tags=["payment methods"], responses=responses(*MERCHANT_KEY))

IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key")]
AnyKey = Annotated[Principal, Depends(any_key)]
_CHANGE_ERRORS = responses(*JSON_BODY, NoSuchObject, NotFound, PaymentMethodUnexpectedState, *IDEMPOTENT)


def _json(body: dict[str, Any], status_code: int = 200) -> Response:
    return Response(dumps(body), status_code=status_code, media_type="application/json")


@router.post(
    "/v1/payment_methods",
    status_code=201,
    summary="Save a card (secret or publishable key)",
    responses=responses(*JSON_BODY, DomainRuleViolated, NoSuchObject, PaymentMethodUnexpectedState, *IDEMPOTENT),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": body_schema(service.PaymentMethodCreate)}},
        }
    },
)
async def create_payment_method(
    request: Request, principal: AnyKey, container: ContainerDep, idempotency_key: IdempotencyKey = None
) -> Response:
    """Validates the card (400 naming `param`) and saves it: the number encrypted in the vault, the CVC checked
    if given and never kept. Nothing is charged or verified with a processor. A publishable key may save a
    card (to tokenize in the browser) but not attach it (`customer`), read it or charge it."""
    payload = await json_body(request)
    body = parse(service.PaymentMethodCreate, payload)
    if body.customer is not None and principal.kind != "secret":
        raise SecretKeyRequired("customer: attaching a payment method to a customer needs the secret key.")

    async def change(conn: Conn) -> dict[str, Any]:
        method = await service.create(conn, container.vault, principal.merchant_id, body)
        return payment_method_object(method)

    return await idempotent.post(
        container, principal.merchant_id, idempotency_key, "/v1/payment_methods", payload, change, status_code=201
    )


@router.get(
    "/v1/payment_methods/{payment_method_id}", summary="Retrieve a saved payment method", responses=responses(NotFound)
)
async def get_payment_method(payment_method_id: str, merchant: Merchant, container: ContainerDep) -> Response:
    return _json(payment_method_object(await service.retrieve(container.db, merchant.merchant_id, payment_method_id)))


@router.post(
    "/v1/payment_methods/{payment_method_id}/attach",
    summary="Attach a saved payment method to a customer",
    responses=_CHANGE_ERRORS,
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": body_schema(service.AttachIn)}}}
    },
)
async def attach_payment_method(
    payment_method_id: str,
    request: Request,
    merchant: Merchant,
    container: ContainerDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Attaching it again to the same customer changes nothing; one attached to another customer must be
    detached first."""
    payload = await json_body(request)
    body = parse(service.AttachIn, payload)

    async def change(conn: Conn) -> dict[str, Any]:
        method = await service.attach(conn, merchant.merchant_id, payment_method_id, body.customer)
        return payment_method_object(method)

    path = f"/v1/payment_methods/{payment_method_id}/attach"
    return await idempotent.post(container, merchant.merchant_id, idempotency_key, path, payload, change)


@router.post(
    "/v1/payment_methods/{payment_method_id}/detach",
    summary="Detach a saved payment method from its customer",
    responses=_CHANGE_ERRORS,
    openapi_extra={"requestBody": {"content": {"application/json": {"schema": body_schema(service.DetachIn)}}}},
)
async def detach_payment_method(
    payment_method_id: str,
    request: Request,
    merchant: Merchant,
    container: ContainerDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """It is no longer the customer's, nor its default payment method."""
    payload = await json_body(request)
    if payload:
        parse(service.DetachIn, payload)

    async def change(conn: Conn) -> dict[str, Any]:
        return payment_method_object(await service.detach(conn, merchant.merchant_id, payment_method_id))

    path = f"/v1/payment_methods/{payment_method_id}/detach"
    return await idempotent.post(container, merchant.merchant_id, idempotency_key, path, payload, change)
